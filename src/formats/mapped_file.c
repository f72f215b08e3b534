#include "formats/mapped_file.h"
#include "core/error.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

qn_status qn_map_file(const char *who, const char *format, const char *path, void **map, size_t *size) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return qn_error(QN_ERR_IO, "%s: %s: %s", who, path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return qn_error(QN_ERR_IO, "%s: %s: %s", who, path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return qn_error(QN_ERR_IO, "%s: %s: not a regular file", who, path);
    }
    /* mmap refuses a length of 0; an empty file is no valid file anyway. */
    if (st.st_size == 0) {
        close(fd);
        return qn_error(QN_ERR_FORMAT, "%s: %s: the file is empty", format, path);
    }
    void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd); /* the mapping keeps the file */
    if (p == MAP_FAILED) return qn_error(QN_ERR_IO, "%s: %s: mmap: %s", who, path, strerror(e));
    *map = p;
    *size = (size_t)st.st_size;
    return QN_OK;
}

qn_status qn_unmap_refused(qn_status s, void *map, size_t size, const char *path) {
    munmap(map, size);
    /* Copied first: qn_error writes the buffer that qn_last_error returns. */
    char msg[512];
    snprintf(msg, sizeof msg, "%s", qn_last_error());
    return qn_error(s, "%s (%s)", msg, path);
}
