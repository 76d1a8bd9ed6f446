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
 *
 * Two more settings in its environment serve the benchmark:
 *   UFFD_PEER_RANDOM=SEED  each thread touches its pages in a random order of its own (seeded).
 *   UFFD_PEER_COMPARE=FILE its memory is compared with FILE (the memory file: regions end to end,
 *                          the discarded pages compared with zeros) instead of written to stdout,
 *                          and one line of counts goes to stdout:
 *     pages=N wrong=W touches=T faults=F touched_ms=M p50_ns=.. p90_ns=.. p99_ns=.. max_ns=..
 *   where each touch (the first read of a page, by one thread) of a page that was not yet in
 *   place (mincore says so just before) is a fault, timed as the faulting thread sees it; the
 *   percentiles are of the faults' times. touched_ms is the time from the first touch until every
 *   thread is done.
 *   UFFD_PEER_DISCARDS=N   right after the handshake a thread discards N random pages of the first
 *                          region, one MADV_DONTNEED each (a UFFD_EVENT_REMOVE each), while the
 *                          handler fills the memory; with UFFD_PEER_COMPARE those pages must then
 *                          read as zeros, and every other page as the file.
 * THREADS may be 0: nothing is touched before the pause (a handler's prefetch fills the memory).
 * Exits 0 when done (whatever the count of wrong pages); 2 on a usage error; 1 with a message on
 * stderr on any failure.
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
#include <time.h>
#include <unistd.h>

#define MAX_REGIONS 8
#define PAGE 4096UL

static unsigned char *base[MAX_REGIONS];
static unsigned long size[MAX_REGIONS];
static unsigned long page_size[MAX_REGIONS];
static int regions;
static int threads;
static unsigned long seed;      /* UFFD_PEER_RANDOM: 0 for the interleaved order */
static uint32_t *touch_ns[64];  /* per thread: each fault's time in ns (UFFD_PEER_COMPARE) */
static unsigned long touches[64];
static unsigned long faults[64];
static int timed;
static unsigned long discards;   /* UFFD_PEER_DISCARDS */
static unsigned char *discarded; /* per page of the first region: 1 once discarded */

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

static uint64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t) t.tv_sec * 1000000000u + (uint64_t) t.tv_nsec;
}

static unsigned long xorshift(unsigned long *x) {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}

static unsigned long total_pages(void) {
    unsigned long n = 0;
    for (int r = 0; r < regions; r++) n += size[r] / PAGE;
    return n;
}

/* The address of the k-th 4 KiB page over all regions. */
static unsigned char *page_at(unsigned long k) {
    for (int r = 0; r < regions; r++) {
        unsigned long pages = size[r] / PAGE;
        if (k < pages) return base[r] + k * PAGE;
        k -= pages;
    }
    return NULL;
}

static void *touch(void *arg) {
    long t = (long) arg;
    volatile unsigned long sum = 0;
    unsigned long all = total_pages();
    /* thread t takes the pages congruent to t: forwards or backwards, or in a random order */
    unsigned long mine = all / (unsigned long) threads + 1, n = 0;
    unsigned long *order = malloc(mine * sizeof *order);
    if (order == NULL) die("malloc");
    for (unsigned long k = (unsigned long) t; k < all; k += (unsigned long) threads) order[n++] = k;
    if (seed != 0) {
        unsigned long x = seed * 2654435761u + (unsigned long) t + 1;
        for (unsigned long i = n; i > 1; i--) {
            unsigned long j = xorshift(&x) % i, tmp = order[i - 1];
            order[i - 1] = order[j];
            order[j] = tmp;
        }
    } else if (t % 2 == 1) {
        for (unsigned long i = 0; i < n / 2; i++) {
            unsigned long tmp = order[i];
            order[i] = order[n - 1 - i];
            order[n - 1 - i] = tmp;
        }
    }
    if (timed) {
        touch_ns[t] = malloc((n + 1) * sizeof(uint32_t));
        if (touch_ns[t] == NULL) die("malloc");
    }
    unsigned long f = 0;
    for (unsigned long i = 0; i < n; i++) {
        unsigned long k = order[i];
        unsigned char *p = page_at(k);
        unsigned char resident = 0;
        if (timed && mincore(p, PAGE, &resident) < 0) die("mincore");
        if (timed && (resident & 1) == 0) {
            uint64_t t0 = now_ns();
            sum += p[k % PAGE];
            uint64_t d = now_ns() - t0;
            touch_ns[t][f++] = d > UINT32_MAX ? UINT32_MAX : (uint32_t) d;
        } else {
            sum += p[k % PAGE];
        }
    }
    touches[t] = n;
    faults[t] = f;
    free(order);
    return (void *) sum;
}

static void *discard(void *arg) {
    (void) arg;
    unsigned long x = 88172645463325252UL, pages = size[0] / PAGE;
    struct timespec pause = {.tv_sec = 0, .tv_nsec = 20000};
    for (unsigned long i = 0; i < discards; i++) {
        unsigned long p = xorshift(&x) % pages;
        discarded[p] = 1; /* before the discard: a read racing it may see either, and is not checked */
        if (madvise(base[0] + p * PAGE, PAGE, MADV_DONTNEED) < 0) die("madvise");
        nanosleep(&pause, NULL);
    }
    return NULL;
}

static int by_value(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *) a, y = *(const uint32_t *) b;
    return x < y ? -1 : x > y;
}

/* Pages of [p, p + n) that differ from [q, q + n), or from zeros when q is NULL. */
static unsigned long wrong_pages(const unsigned char *p, const unsigned char *q, unsigned long n) {
    static const unsigned char zeros[PAGE];
    unsigned long wrong = 0;
    for (unsigned long at = 0; at < n; at += PAGE) {
        if (memcmp(p + at, q == NULL ? zeros : q + at, PAGE) != 0) wrong++;
    }
    return wrong;
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
    if (threads < 0) threads = 0;
    if (threads > 64) threads = 64;
    const char *random = getenv("UFFD_PEER_RANDOM");
    if (random != NULL) seed = strtoul(random, NULL, 0);
    const char *compare = getenv("UFFD_PEER_COMPARE");
    timed = compare != NULL;
    const char *d = getenv("UFFD_PEER_DISCARDS");
    if (d != NULL) discards = strtoul(d, NULL, 0);

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

    pthread_t tid[64], discarder;
    if (discards > 0) {
        discarded = calloc(size[0] / PAGE, 1);
        if (discarded == NULL) die("calloc");
        if (pthread_create(&discarder, NULL, discard, NULL) != 0) die("pthread_create");
    }
    uint64_t start = now_ns();
    for (long t = 0; t < threads; t++) {
        if (pthread_create(&tid[t], NULL, touch, (void *) t) != 0) die("pthread_create");
    }
    for (int t = 0; t < threads; t++) pthread_join(tid[t], NULL);
    if (discards > 0) pthread_join(discarder, NULL);
    double touched_ms = (double) (now_ns() - start) / 1e6;
    if (compare == NULL) {
        for (int r = 0; r < regions; r++) write_all(base[r], size[r]);
    }

    if (getenv("UFFD_PEER_PAUSE") != NULL) {
        char go;
        if (read(0, &go, 1) != 1) die("read the go-ahead from stdin");
    }
    unsigned long wrong = 0;
    if (compare != NULL) {
        int fd = open(compare, O_RDONLY | O_CLOEXEC);
        if (fd < 0) die("open the memory file to compare with");
        unsigned long at = 0;
        for (int r = 0; r < regions; r++) at += size[r];
        unsigned char *file = mmap(NULL, at, PROT_READ, MAP_PRIVATE, fd, 0);
        if (file == MAP_FAILED) die("mmap the memory file");
        at = 0;
        for (int r = 0; r < regions; r++) {
            if (r == 0 && discarded != NULL) {
                for (unsigned long p = 0; p < size[0] / PAGE; p++) {
                    unsigned long w = wrong_pages(base[0] + p * PAGE, discarded[p] ? NULL : file + p * PAGE, PAGE);
                    if (w != 0 && wrong == 0) {
                        /* the first wrong page, for the record: what it should hold, and whether it reads zeros */
                        fprintf(stderr, "uffd_peer: page %lu (host address %lu) is wrong: it should read %s; it reads %s\n", p,
                                (unsigned long) (uintptr_t) (base[0] + p * PAGE),
                                discarded[p] ? "zeros (discarded)" : "the file",
                                wrong_pages(base[0] + p * PAGE, NULL, PAGE) == 0 ? "zeros" : "other bytes");
                    }
                    wrong += w;
                }
            } else {
                wrong += wrong_pages(base[r], file + at, size[r]);
            }
            at += size[r];
        }
        munmap(file, at);
        close(fd);
    }
    if (argc == 6) {
        unsigned long first = strtoul(argv[4], NULL, 0), pages = strtoul(argv[5], NULL, 0);
        if (madvise(base[0] + first * PAGE, pages * PAGE, MADV_DONTNEED) < 0) die("madvise");
        if (compare == NULL) write_all(base[0] + first * PAGE, pages * PAGE);
        else wrong += wrong_pages(base[0] + first * PAGE, NULL, pages * PAGE);
    }
    if (compare != NULL) {
        unsigned long n = 0, touched = 0;
        for (int t = 0; t < threads; t++) {
            n += faults[t];
            touched += touches[t];
        }
        uint32_t *all = malloc((n + 1) * sizeof *all);
        if (all == NULL) die("malloc");
        unsigned long k = 0;
        for (int t = 0; t < threads; t++) {
            memcpy(all + k, touch_ns[t], faults[t] * sizeof *all);
            k += faults[t];
        }
        qsort(all, n, sizeof *all, by_value);
#define AT(q) (n == 0 ? 0 : all[(unsigned long) ((double) (n - 1) * (q))])
        printf("pages=%lu wrong=%lu touches=%lu faults=%lu touched_ms=%.3f p50_ns=%u p90_ns=%u p99_ns=%u max_ns=%u\n",
                total_pages(), wrong, touched, n, touched_ms, AT(0.50), AT(0.90), AT(0.99), AT(1.0));
        fflush(stdout);
    }
    close(sock);
    return 0;
}
