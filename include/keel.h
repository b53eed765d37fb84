/* keel's public C API. Embed keel as a library by linking libkeel.a and
 * including this header. */
#ifndef KEEL_H
#define KEEL_H

#define KEEL_VERSION "0.1.0"

#include "../src/core/error.h"
#include "../src/core/checksum.h"
#include "../src/core/rng.h"
#include "../src/data/tokenizer.h"




#endif
