/*
 * A test peer that plays a VMM whose memory another process serves: it maps anonymous private
 * memory for each region, registers it with a new userfaultfd (MISSING, EVENT_REMOVE), sends the
 * descriptor with a JSON array of its regions over a Unix socket (one sendmsg, as the Firecracker
 * page-fault-handler protocol does), then reads its memory and writes it to stdout.
 *
 *   uffd_peer SOCKET SIZE[,SIZE...] THREADS [REMOVE_PAGE REMOVE_PAGES]
 *
 * A SIZE that ends in 'h' is a region of 2 MiB hugetlbfs pages (MAP_HUGETLB), as a VMM backed by
 * huge pages has; the others have 4 KiB pages.
 * THREADS threads first touch every page, each in its own interleaved order (their faults are
 * served by the other process); then all regions are written to stdout, in order. With
 * REMOVE_PAGE, REMOVE_PAGES pages from that page of the first region are then discarded with
 * MADV_DONTNEED (a UFFD_EVENT_REMOVE) and written to stdout again: they must read as zeros.
 * With UFFD_PEER_PAUSE set in its environment, it waits for a byte on stdin before the discard
 * (so that a test can act between the two phases).
 * Exits 0 when done; 2 on a usage error; 1 with a message on stderr on any failure.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <linux/mman.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#define MAX_REGIONS 8
#define PAGE 4096UL

static unsigned char *base[MAX_REGIONS];
static unsigned long size[MAX_REGIONS];
static unsigned long page_size[MAX_REGIONS];
static int regions;
static int threads;

static void die(const char *what) {
    fprintf(stderr, "uffd_peer: %s: %s\n", what, strerror(errno));
    exit(1);
}

static void write_all(const unsigned char *p, unsigned long n) {
    while (n > 0) {
        ssize_t w = write(1, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            die("write to stdout");
        }
        p += w;
        n -= (unsigned long) w;
    }
}

static void *touch(void *arg) {
    long t = (long) arg;
    volatile unsigned long sum = 0;
    for (int r = 0; r < regions; r++) {
        unsigned long pages = size[r] / PAGE;
        /* thread t goes forwards or backwards over the pages congruent to t */
        for (unsigned long k = 0; k < pages; k++) {
            unsigned long p = (t % 2 == 0) ? k : pages - 1 - k;
            if (p % (unsigned long) threads != (unsigned long) t) continue;
            sum += base[r][p * PAGE + (p % PAGE)];
        }
    }
    return (void *) sum;
}

int main(int argc, char **argv) {
    if (argc != 4 && argc != 6) {
        fprintf(stderr, "usage: uffd_peer SOCKET SIZE[,SIZE...] THREADS [REMOVE_PAGE REMOVE_PAGES]\n");
        return 2;
    }
    for (char *s = argv[2]; *s && regions < MAX_REGIONS; regions++) {
        size[regions] = strtoul(s, &s, 0);
        page_size[regions] = PAGE;
        if (*s == 'h') {
            page_size[regions] = 2UL << 20;
            s++;
        }
        if (*s == ',') s++;
    }
    threads = atoi(argv[3]);
    if (threads < 1) threads = 1;

    int uffd = (int) syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
    if (uffd < 0) die("userfaultfd");
    struct uffdio_api api = {.api = UFFD_API, .features = UFFD_FEATURE_EVENT_REMOVE};
    if (ioctl(uffd, UFFDIO_API, &api) < 0) die("UFFDIO_API");

    char json[4096];
    size_t used = 0;
    unsigned long offset = 0;
    used += (size_t) snprintf(json + used, sizeof json - used, "[");
    for (int r = 0; r < regions; r++) {
        int huge = page_size[r] == PAGE ? 0 : MAP_HUGETLB | (21 << MAP_HUGE_SHIFT);
        base[r] = mmap(NULL, size[r], PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | huge, -1, 0);
        if (base[r] == MAP_FAILED) die("mmap");
        struct uffdio_register reg = {.range = {.start = (uintptr_t) base[r], .len = size[r]}, .mode = UFFDIO_REGISTER_MODE_MISSING};
        if (ioctl(uffd, UFFDIO_REGISTER, &reg) < 0) die("UFFDIO_REGISTER");
        used += (size_t) snprintf(json + used, sizeof json - used,
                "%s{\"base_host_virt_addr\":%lu,\"size\":%lu,\"offset\":%lu,\"page_size\":%lu,\"page_size_kib\":%lu}", r ? "," : "",
                (unsigned long) (uintptr_t) base[r], size[r], offset, page_size[r], page_size[r]);
        offset += size[r];
    }
    used += (size_t) snprintf(json + used, sizeof json - used, "]");

    int sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (sock < 0) die("socket");
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    strncpy(addr.sun_path, argv[1], sizeof addr.sun_path - 1);
    if (connect(sock, (struct sockaddr *) &addr, sizeof addr) < 0) die("connect");
    struct iovec iov = {.iov_base = json, .iov_len = used};
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } control;
    memset(&control, 0, sizeof control);
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf, .msg_controllen = sizeof control.buf};
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &uffd, sizeof(int));
    if (sendmsg(sock, &msg, 0) < 0) die("sendmsg");

    pthread_t tid[64];
    if (threads > 64) threads = 64;
    for (long t = 0; t < threads; t++) {
        if (pthread_create(&tid[t], NULL, touch, (void *) t) != 0) die("pthread_create");
    }
    for (int t = 0; t < threads; t++) pthread_join(tid[t], NULL);
    for (int r = 0; r < regions; r++) write_all(base[r], size[r]);

    if (getenv("UFFD_PEER_PAUSE") != NULL) {
        char go;
        if (read(0, &go, 1) != 1) die("read the go-ahead from stdin");
    }
    if (argc == 6) {
        unsigned long first = strtoul(argv[4], NULL, 0), pages = strtoul(argv[5], NULL, 0);
        if (madvise(base[0] + first * PAGE, pages * PAGE, MADV_DONTNEED) < 0) die("madvise");
        write_all(base[0] + first * PAGE, pages * PAGE);
    }
    close(sock);
    return 0;
}
