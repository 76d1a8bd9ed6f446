/*
 * gmem's C reference page-fault handler for Firecracker's UFFD snapshot restore: the baseline that
 * serves one page per fault, as Firecracker's on-demand example handler does, with no prefetch and
 * no fault-around.
 *
 *   fc_reference SOCKET MEMORY_FILE
 *
 * Maps MEMORY_FILE read-only once, listens on the Unix stream socket SOCKET (which must not exist),
 * prints "ready" and then serves every VMM that connects, each on its own thread. A VMM sends one
 * message: a JSON array of its regions ({"base_host_virt_addr","size","offset","page_size",
 * "page_size_kib"}, page_size in bytes, offset in the memory file) with its userfaultfd as the one
 * SCM_RIGHTS descriptor; it has done UFFDIO_API (with UFFD_FEATURE_EVENT_REMOVE) and registered
 * the regions in MISSING mode itself, and expects no reply.
 *
 * A fault is resolved with a UFFDIO_COPY of the one page that holds it from the memory file; a page
 * the VMM has discarded since (UFFD_EVENT_REMOVE) reads as zeros from then on. A session ends
 * quietly when the VMM goes away (its socket hangs up, or the kernel reports its address space
 * gone); a handshake that is not understood ends that session with a message on stderr. Any other
 * failure to resolve a fault is fatal: the message goes to stderr and the handler exits 1.
 * Exits 2 on a usage error. SIGTERM and SIGINT just end it; SOCKET is left behind.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define MAX_REGIONS 16
#define MAX_FDS 4
#define MAX_MESSAGE 8192
#define BATCH 16
#define SMALL_PAGE 4096UL
#define HUGE_PAGE (2UL << 20)

struct region {
    uint64_t base, size, offset, page;
    unsigned char *removed; /* one byte per page: discarded by the VMM, reads as zeros */
};

struct session {
    unsigned long id;
    int sock, uffd;
    int regions;
    struct region region[MAX_REGIONS];
    uint64_t *pending; /* faults read while a removal was being applied, served next */
    size_t pending_head, pending_tail, pending_cap;
};

static const unsigned char *memory; /* the memory file, mapped read-only */
static uint64_t memory_size;
static unsigned char zeros[HUGE_PAGE]; /* source of a discarded huge page (hugetlbfs has no ZEROPAGE) */

static void die(const char *what) {
    fprintf(stderr, "fc_reference: %s: %s\n", what, strerror(errno));
    exit(1);
}

/* Ends a session's handshake with a message; returns -1 for the caller to pass on. */
static int refuse(const struct session *s, const char *why) {
    fprintf(stderr, "fc_reference: session %lu: %s\n", s->id, why);
    return -1;
}

/* Receives the one message and its descriptor into s->uffd; leaves the JSON, NUL-terminated, in json. */
static int receive(struct session *s, char *json, size_t cap) {
    size_t used = 0;
    while (s->uffd < 0) { /* a zero-length read may come first: retry until the descriptor arrives */
        if (used == cap - 1) return refuse(s, "the message is too long");
        union {
            char buf[CMSG_SPACE(MAX_FDS * sizeof(int))];
            struct cmsghdr align;
        } control;
        struct iovec iov = {.iov_base = json + used, .iov_len = cap - 1 - used};
        struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf, .msg_controllen = sizeof control.buf};
        ssize_t n = recvmsg(s->sock, &msg, MSG_CMSG_CLOEXEC);
        if (n < 0) {
            if (errno == EINTR) continue;
            return refuse(s, strerror(errno));
        }
        int fds = 0;
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c)) {
            if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
            for (size_t i = 0; i < (c->cmsg_len - CMSG_LEN(0)) / sizeof(int); i++, fds++) {
                int fd;
                memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
                if (s->uffd < 0) s->uffd = fd; /* kept, and closed with the session */
                else close(fd);
            }
        }
        if (fds > 1 || (msg.msg_flags & MSG_CTRUNC)) return refuse(s, "the message carried more than one descriptor");
        if (n == 0 && fds == 0) return refuse(s, "the VMM closed the connection without sending a descriptor");
        used += (size_t) n;
        json[used] = '\0';
    }
    return 0;
}

/* Finds "name": and the unsigned integer after it within obj. */
static int field(const char *obj, const char *name, uint64_t *value) {
    const char *p = strstr(obj, name);
    if (p == NULL) return -1;
    p += strlen(name);
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') p++;
    if (*p++ != ':') return -1;
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') p++;
    if (*p < '0' || *p > '9') return -1;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(p, &end, 10);
    if (errno != 0) return -1;
    *value = v;
    return 0;
}

static int parse(struct session *s, char *json) {
    char why[160];
    for (char *p = strchr(json, '{'); p != NULL; p = strchr(p, '{')) {
        char *end = strchr(p, '}');
        if (end == NULL) return refuse(s, "the message is not a JSON array of regions");
        *end = '\0';
        if (s->regions == MAX_REGIONS) return refuse(s, "the message lists more than 16 regions");
        struct region *r = &s->region[s->regions];
        if (field(p, "\"base_host_virt_addr\"", &r->base) < 0 || field(p, "\"size\"", &r->size) < 0
                || field(p, "\"offset\"", &r->offset) < 0
                || (field(p, "\"page_size\"", &r->page) < 0 && field(p, "\"page_size_kib\"", &r->page) < 0)) {
            snprintf(why, sizeof why, "region %d lacks base_host_virt_addr, size, offset or page_size", s->regions);
            return refuse(s, why);
        }
        if (r->page != SMALL_PAGE && r->page != HUGE_PAGE) {
            snprintf(why, sizeof why, "region %d: page_size %" PRIu64 " is neither 4096 nor 2097152", s->regions, r->page);
            return refuse(s, why);
        }
        if (r->size == 0 || r->base % r->page != 0 || r->size % r->page != 0 || r->base + r->size < r->base) {
            snprintf(why, sizeof why, "region %d: base 0x%" PRIx64 " and size %" PRIu64 " are not whole pages",
                    s->regions, r->base, r->size);
            return refuse(s, why);
        }
        if (r->size > memory_size || r->offset > memory_size - r->size) {
            snprintf(why, sizeof why, "region %d: offset %" PRIu64 " + size %" PRIu64 " is past the end of the memory file",
                    s->regions, r->offset, r->size);
            return refuse(s, why);
        }
        r->removed = calloc(r->size / r->page, 1);
        if (r->removed == NULL) die("calloc");
        s->regions++;
        p = end + 1;
    }
    if (s->regions == 0) return refuse(s, "the message lists no region");
    return 0;
}

static struct region *find(struct session *s, uint64_t addr) {
    for (int i = 0; i < s->regions; i++) {
        struct region *r = &s->region[i];
        if (addr >= r->base && addr - r->base < r->size) return r;
    }
    return NULL;
}

static void removed(struct session *s, uint64_t start, uint64_t end) {
    for (int i = 0; i < s->regions; i++) {
        struct region *r = &s->region[i];
        uint64_t from = start > r->base ? start : r->base, to = end < r->base + r->size ? end : r->base + r->size;
        if (from >= to) continue;
        for (uint64_t p = (from - r->base) / r->page; p < (to - r->base + r->page - 1) / r->page; p++) r->removed[p] = 1;
    }
}

static void defer(struct session *s, uint64_t addr) {
    if (s->pending_head == s->pending_tail) s->pending_head = s->pending_tail = 0;
    if (s->pending_tail == s->pending_cap) {
        s->pending_cap = s->pending_cap ? 2 * s->pending_cap : 64;
        s->pending = realloc(s->pending, s->pending_cap * sizeof *s->pending);
        if (s->pending == NULL) die("realloc");
    }
    s->pending[s->pending_tail++] = addr;
}

/* Reads what events are there: removals are applied now, faults kept for later. Returns how many. */
static int drain(struct session *s) {
    struct uffd_msg msg[BATCH];
    int total = 0;
    for (;;) {
        ssize_t n = read(s->uffd, msg, sizeof msg);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN) return total;
            die("read the userfaultfd");
        }
        if (n == 0) return total;
        for (size_t i = 0; i < (size_t) n / sizeof msg[0]; i++) {
            if (msg[i].event == UFFD_EVENT_REMOVE) removed(s, msg[i].arg.remove.start, msg[i].arg.remove.end);
            else if (msg[i].event == UFFD_EVENT_PAGEFAULT) defer(s, msg[i].arg.pagefault.address);
        }
        total += (int) ((size_t) n / sizeof msg[0]);
    }
}

/* Resolves the fault at addr with its one page. Returns 0 when done, -1 when the VMM is gone. */
static int fault(struct session *s, uint64_t addr) {
    for (;;) {
        struct region *r = find(s, addr);
        if (r == NULL) {
            fprintf(stderr, "fc_reference: a fault at 0x%" PRIx64 " is in no region\n", addr);
            exit(1);
        }
        uint64_t page = addr & ~(r->page - 1), index = (page - r->base) / r->page;
        const char *op;
        int rc;
        if (r->removed[index] && r->page == SMALL_PAGE) {
            struct uffdio_zeropage z = {.range = {.start = page, .len = r->page}};
            op = "UFFDIO_ZEROPAGE";
            rc = ioctl(s->uffd, UFFDIO_ZEROPAGE, &z);
        } else {
            const unsigned char *src = r->removed[index] ? zeros : memory + r->offset + (page - r->base);
            struct uffdio_copy c = {.dst = page, .src = (uintptr_t) src, .len = r->page};
            op = "UFFDIO_COPY";
            rc = ioctl(s->uffd, UFFDIO_COPY, &c);
        }
        if (rc == 0) return 0;
        if (errno == EEXIST) {
            /* another fault on the page was served first; wake this one, it faults again if it must */
            struct uffdio_range w = {.start = page, .len = r->page};
            ioctl(s->uffd, UFFDIO_WAKE, &w);
            return 0;
        }
        if (errno == ENOENT || errno == ESRCH) return -1;
        if (errno == EAGAIN) {
            /* a removal is under way: apply its event first; if it has been read already, give the
             * VMM's discarding thread a moment to finish (or a new event to arrive), then retry */
            if (drain(s) == 0) {
                struct pollfd p = {.fd = s->uffd, .events = POLLIN};
                struct timespec pause = {.tv_sec = 0, .tv_nsec = 20000};
                ppoll(&p, 1, &pause, NULL);
            }
            continue;
        }
        fprintf(stderr, "fc_reference: %s at 0x%" PRIx64 ": %s\n", op, page, strerror(errno));
        exit(1);
    }
}

static void serve(struct session *s) {
    struct uffd_msg msg[BATCH];
    for (;;) {
        while (s->pending_head != s->pending_tail) {
            if (fault(s, s->pending[s->pending_head++]) < 0) return;
        }
        /* the userfaultfd does not hang up when the VMM's address space goes: its socket does */
        struct pollfd p[2] = {{.fd = s->uffd, .events = POLLIN}, {.fd = s->sock, .events = POLLIN | POLLRDHUP}};
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR) continue;
            die("poll");
        }
        if (p[0].revents & (POLLHUP | POLLERR)) return;
        if (p[1].revents & (POLLHUP | POLLRDHUP | POLLERR)) return;
        if (p[1].revents & POLLIN) {
            char junk[256]; /* the protocol has nothing more to say; whatever comes is dropped */
            ssize_t n = recv(s->sock, junk, sizeof junk, MSG_DONTWAIT);
            if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) return;
        }
        if (!(p[0].revents & POLLIN)) continue;
        ssize_t n = read(s->uffd, msg, sizeof msg);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR) continue;
            die("read the userfaultfd");
        }
        if (n == 0) return;
        for (size_t i = 0; i < (size_t) n / sizeof msg[0]; i++) {
            if (msg[i].event == UFFD_EVENT_PAGEFAULT) {
                if (s->pending_head != s->pending_tail) defer(s, msg[i].arg.pagefault.address); /* keep the order */
                else if (fault(s, msg[i].arg.pagefault.address) < 0) return;
            } else if (msg[i].event == UFFD_EVENT_REMOVE) {
                removed(s, msg[i].arg.remove.start, msg[i].arg.remove.end);
            }
        }
    }
}

static void *session(void *arg) {
    struct session *s = arg;
    char json[MAX_MESSAGE];
    if (receive(s, json, sizeof json) == 0 && parse(s, json) == 0) {
        int flags = fcntl(s->uffd, F_GETFL);
        if (flags >= 0 && !(flags & O_NONBLOCK)) fcntl(s->uffd, F_SETFL, flags | O_NONBLOCK);
        serve(s);
    }
    if (s->uffd >= 0) close(s->uffd);
    close(s->sock);
    for (int i = 0; i < s->regions; i++) free(s->region[i].removed);
    free(s->pending);
    free(s);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: fc_reference SOCKET MEMORY_FILE\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);

    int fd = open(argv[2], O_RDONLY | O_CLOEXEC);
    if (fd < 0) die(argv[2]);
    struct stat st;
    if (fstat(fd, &st) < 0) die("fstat");
    memory_size = (uint64_t) st.st_size;
    if (memory_size > 0) {
        memory = mmap(NULL, memory_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (memory == MAP_FAILED) die("mmap the memory file");
    }
    close(fd);

    int listener = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (listener < 0) die("socket");
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    if (strlen(argv[1]) >= sizeof addr.sun_path) {
        fprintf(stderr, "fc_reference: the socket path is too long\n");
        return 2;
    }
    strcpy(addr.sun_path, argv[1]);
    if (bind(listener, (struct sockaddr *) &addr, sizeof addr) < 0) die(argv[1]);
    if (listen(listener, 64) < 0) die("listen");
    printf("ready\n");
    fflush(stdout);

    pthread_attr_t attr;
    if (pthread_attr_init(&attr) != 0 || pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED) != 0) {
        die("pthread_attr");
    }
    for (unsigned long id = 1;; id++) {
        int conn = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
        if (conn < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            die("accept");
        }
        struct session *s = calloc(1, sizeof *s);
        if (s == NULL) die("calloc");
        s->id = id;
        s->sock = conn;
        s->uffd = -1;
        pthread_t tid;
        int rc = pthread_create(&tid, &attr, session, s);
        if (rc != 0) {
            errno = rc;
            die("pthread_create");
        }
    }
}
