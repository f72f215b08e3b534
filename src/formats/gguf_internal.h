/* What the GGUF reader (gguf.c) and writer (gguf_writer.c) share. */
#ifndef QN_FORMATS_GGUF_INTERNAL_H
#define QN_FORMATS_GGUF_INTERNAL_H

#include "quanta.h"

#define QN_GGUF_MAGIC "GGUF"
#define QN_GGUF_VERSION 3          /* what the writer writes */
#define QN_GGUF_DEFAULT_ALIGNMENT 32
#define QN_GGUF_MAX_DIMS 4

/* Bytes of one value of a fixed-size type; 0 for string and array, -1 for a
 * number that is not a type. */
int qn_gguf_type_size(uint32_t type);

#endif
