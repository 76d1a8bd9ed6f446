/*
 * gmem's C reference for `gmem bench populate`: times pwrite() of a warm source buffer into a
 * fresh memfd, the figure gmem's Java write path is held to.
 *
 * Usage: pwrite_memfd SIZE_BYTES. Fills its source once, prints "ready", then for every line it
 * reads on standard input does one run and prints the milliseconds the pwrite loop took (the memfd
 * creation is not timed), so that runs interleave with gmem's own. Ends at end of input.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s SIZE_BYTES\n", argv[0]);
        return 2;
    }
    size_t size = strtoull(argv[1], NULL, 10);
    unsigned char *src = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (src == MAP_FAILED) { perror("mmap"); return 1; }
    for (size_t i = 0; i < size; i += 8) *(unsigned long long *)(src + i) = (i / 8 + 1) * 0x9E3779B97F4A7C15ULL;
    printf("ready\n");
    fflush(stdout);
    char line[64];
    while (fgets(line, sizeof line, stdin) != NULL) {
        int fd = memfd_create("gmem-c-reference", MFD_CLOEXEC);
        if (fd < 0 || ftruncate(fd, (off_t)size) != 0) { perror("memfd"); return 1; }
        double start = now_ms();
        size_t done = 0;
        while (done < size) {
            ssize_t n = pwrite(fd, src + done, size - done, (off_t)done);
            if (n <= 0) { perror("pwrite"); return 1; }
            done += (size_t)n;
        }
        double ms = now_ms() - start;
        close(fd);
        printf("%.3f\n", ms);
        fflush(stdout);
    }
    return 0;
}
