/*
 * lossy_sync.so: an LD_PRELOAD shim that remembers, for every regular file
 * under $LOSSY_DIR, the content it had at its last successful fsync or
 * fdatasync, in "<file>.durable". A test that kills the process and then
 * replaces each file by its ".durable" image (or deletes a file that was
 * never synced) reproduces what a power loss leaves: only synced data.
 *
 * The image is taken right after the real sync returns, so it may also hold
 * writes that raced with the sync: it is never less durable than the disk,
 * which can hide nothing that was acknowledged without a sync.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <unistd.h>

static void remember(int fd) {
    const char *dir = getenv("LOSSY_DIR");
    if (dir == NULL || *dir == '\0') return;
    char link[64], path[PATH_MAX];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 1);
    if (n <= 0) return;
    path[n] = '\0';
    if (strncmp(path, dir, strlen(dir)) != 0) return;
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) return;
    char image[PATH_MAX + 16], partial[PATH_MAX + 32];
    snprintf(image, sizeof image, "%s.durable", path);
    snprintf(partial, sizeof partial, "%s.durable.partial", path);
    int in = open(path, O_RDONLY | O_CLOEXEC);
    if (in < 0) return;
    int out = open(partial, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (out < 0) { close(in); return; }
    off_t offset = 0;
    while (offset < st.st_size) {
        ssize_t copied = sendfile(out, in, &offset, (size_t)(st.st_size - offset));
        if (copied <= 0) break;
    }
    close(in);
    close(out);
    if (offset == st.st_size) rename(partial, image); else unlink(partial);
}

int fsync(int fd) {
    static int (*real)(int);
    if (real == NULL) real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    int result = real(fd);
    if (result == 0) remember(fd);
    return result;
}

int fdatasync(int fd) {
    static int (*real)(int);
    if (real == NULL) real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    int result = real(fd);
    if (result == 0) remember(fd);
    return result;
}
