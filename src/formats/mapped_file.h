/* Whole files mapped read-only, for the readers that parse a file in place
 * (gguf.c, safetensors.c): one place for the open/stat/mmap steps and their
 * error messages. */
#ifndef QN_FORMATS_MAPPED_FILE_H
#define QN_FORMATS_MAPPED_FILE_H

#include "quanta.h"

#include <stddef.h>

/* Map the regular, non-empty file at path into *map (*size bytes). Errors
 * name `who` (the public call), or for an empty file `format` ("gguf"):
 * QN_ERR_IO when the file cannot be opened, is not a regular file or cannot
 * be mapped; QN_ERR_FORMAT when it is empty. */
qn_status qn_map_file(const char *who, const char *format, const char *path, void **map, size_t *size);

/* For a reader that refused the mapped bytes with status s: unmap them and
 * return s, its message followed by " (path)" so it says which file. */
qn_status qn_unmap_refused(qn_status s, void *map, size_t size, const char *path);

#endif
