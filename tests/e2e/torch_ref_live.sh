# The live PyTorch comparison: regenerate the reference fixtures with
# Debian's python3-torch and check keel against them (the committed fixtures
# are checked by unit/test_ref without torch).
source "$(dirname "$0")/lib.bash"
/usr/bin/python3 -c 'import torch' 2>/dev/null || { echo "python3-torch is not installed"; exit 77; }
/usr/bin/python3 tests/ref/deepseek_ref.py make-fixture "$T/full" --variant full --seed 7
/usr/bin/python3 tests/ref/deepseek_ref.py make-fixture "$T/dense" --variant dense --seed 8
KEEL_REF_FIXTURES=$T build/tests/test_ref
/usr/bin/python3 tests/ref/ops_ref.py "$T/ops.safetensors" --seed 11
KEEL_REF_FIXTURES=$T build/tests/test_ops
