/* impair.c - a lossy, slow, narrow network for the media tests, in user space.
 *
 * This kernel has no sch_netem, so packets are impaired by a program that
 * holds them in an NFQUEUE: an iptables rule inside a network namespace the
 * test creates sends every UDP packet there (TCP, i.e. HTTP signalling, is
 * left alone), and this program gives each one its verdict: dropped, or
 * accepted now or later.  On loopback each packet leaves through OUTPUT
 * once, so every UDP hop (publisher -> server, server -> subscriber, and
 * the RTCP going back) crosses the impairment exactly once.
 *
 *   impair --queue N [--loss PCT] [--burst LEN] [--delay-ms MS]
 *          [--rate-kbit K --queue-ms MS] [--outage-ms MS] [--seed S]
 *
 *   --loss PCT      packets dropped at random (percent, e.g. 2 or 0.5)
 *   --burst LEN     mean length of a loss burst (Gilbert-Elliott: the same
 *                   average loss, in runs of LEN packets); 1 = independent
 *   --delay-ms MS   every packet that passes is held MS milliseconds
 *   --rate-kbit K   each flow (source and destination address and port) is
 *                   a link of K kbit/s: packets leave one after another at
 *                   that rate, and one that would wait longer than
 *                   --queue-ms (default 200) is tail-dropped, as a home
 *                   router's buffer does
 *   --outage-ms MS  on SIGUSR1, drop everything for MS milliseconds
 *
 * On SIGTERM or SIGINT it releases what it holds and prints one JSON line
 * of counts on stdout.  Start it, then add the rule with --queue-bypass so
 * that packets pass unimpaired whenever it is not running:
 *
 *   unshare -n sh -c 'ip link set lo up
 *     iptables-legacy -t mangle -A OUTPUT -p udp -j NFQUEUE --queue-num 7 --queue-bypass
 *     impair --queue 7 --loss 2 --delay-ms 20 & ... the test ...'
 *
 * tests/blackbox/test_network.py does exactly that; docs/benchmarks.md
 * ("Media under loss") has the figures it gives.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <libnetfilter_queue/libnetfilter_queue.h>
#include <linux/netfilter.h>
#include <netinet/ip.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {
    uint32_t id;
    int64_t release_us;
} Held;

typedef struct {
    uint32_t key[3];    /* saddr, daddr, ports */
    int64_t busy_until; /* when the link is free again */
    int used;
} Flow;

#define MAX_HELD 65536
#define MAX_FLOWS 1024

static struct {
    double loss, burst;
    int64_t delay_us, queue_us, outage_us;
    double rate_bps;
    int bad; /* Gilbert-Elliott state */
    int64_t outage_until;
    Held held[MAX_HELD];
    size_t n_held;
    Flow flows[MAX_FLOWS];
    unsigned long seen, lost_random, lost_queue, lost_outage, lost_full, passed;
    unsigned long long bytes;
} im;

static volatile sig_atomic_t stop_requested, outage_requested;

static int64_t
now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static double
uniform(void)
{
    return (double)random() / ((double)RAND_MAX + 1.0);
}

/* Whether the loss model drops the next packet.  Gilbert-Elliott with a
 * bad state that always drops: leaving it has probability 1/burst, entering
 * it is chosen so that the long-run share of bad packets is the loss. */
static int
random_loss(void)
{
    if (im.loss <= 0)
        return 0;
    if (im.burst <= 1)
        return uniform() < im.loss;
    double p_bg = 1.0 / im.burst;
    double p_gb = im.loss * p_bg / (1.0 - im.loss);
    im.bad = im.bad ? uniform() >= p_bg : uniform() < p_gb;
    return im.bad;
}

static Flow *
flow_of(const uint32_t key[3])
{
    uint32_t h = (key[0] * 2654435761u) ^ (key[1] * 40503u) ^ key[2];
    for (size_t i = 0; i < MAX_FLOWS; i++) {
        Flow *f = &im.flows[(h + i) % MAX_FLOWS];
        if (!f->used) {
            f->used = 1;
            memcpy(f->key, key, sizeof f->key);
            return f;
        }
        if (!memcmp(f->key, key, sizeof f->key))
            return f;
    }
    return NULL; /* table full: the flow goes unlimited */
}

/* Keeps the held packets sorted by release time (a rate-limited flow's
 * packets can be released after a later one of another flow). */
static void
hold(uint32_t id, int64_t release)
{
    size_t i = im.n_held;
    while (i > 0 && im.held[i - 1].release_us > release) {
        im.held[i] = im.held[i - 1];
        i--;
    }
    im.held[i].id = id;
    im.held[i].release_us = release;
    im.n_held++;
}

static int
on_packet(struct nfq_q_handle *qh, struct nfgenmsg *msg, struct nfq_data *nfa, void *data)
{
    struct nfqnl_msg_packet_hdr *ph = nfq_get_msg_packet_hdr(nfa);
    if (!ph)
        return 0;
    uint32_t id = ntohl(ph->packet_id);
    unsigned char *payload = NULL;
    int copied = nfq_get_payload(nfa, &payload);
    /* Only the headers were copied: the length is the IP header's. */
    int len = copied >= 20 ? ntohs(((const struct iphdr *)payload)->tot_len) : 0;
    int64_t now = now_us();
    im.seen++;
    if (now < im.outage_until) {
        im.lost_outage++;
        return nfq_set_verdict(qh, id, NF_DROP, 0, NULL);
    }
    if (random_loss()) {
        im.lost_random++;
        return nfq_set_verdict(qh, id, NF_DROP, 0, NULL);
    }
    int64_t release = now;
    if (im.rate_bps > 0 && copied >= 28) {
        const struct iphdr *ip = (const struct iphdr *)payload;
        uint32_t ports;
        memcpy(&ports, payload + ip->ihl * 4, 4);
        uint32_t key[3] = {ip->saddr, ip->daddr, ports};
        Flow *f = flow_of(key);
        if (f) {
            /* The IP packet's size on the wire; the link is busy with the
             * packets queued before it. */
            int64_t tx = (int64_t)(len * 8.0 * 1e6 / im.rate_bps);
            int64_t start = f->busy_until > now ? f->busy_until : now;
            if (start - now > im.queue_us) {
                im.lost_queue++;
                return nfq_set_verdict(qh, id, NF_DROP, 0, NULL);
            }
            f->busy_until = start + tx;
            release = f->busy_until;
        }
    }
    release += im.delay_us;
    im.passed++;
    im.bytes += (unsigned long long)(len > 0 ? len : 0);
    if (release <= now)
        return nfq_set_verdict(qh, id, NF_ACCEPT, 0, NULL);
    if (im.n_held == MAX_HELD) {
        im.lost_full++;
        return nfq_set_verdict(qh, id, NF_DROP, 0, NULL);
    }
    hold(id, release);
    return 0;
}

static void
release_due(struct nfq_q_handle *qh, int64_t now)
{
    size_t n = 0;
    while (n < im.n_held && im.held[n].release_us <= now)
        nfq_set_verdict(qh, im.held[n++].id, NF_ACCEPT, 0, NULL);
    if (n) {
        memmove(im.held, im.held + n, (im.n_held - n) * sizeof im.held[0]);
        im.n_held -= n;
    }
}

static void
on_signal(int sig)
{
    if (sig == SIGUSR1)
        outage_requested = 1;
    else
        stop_requested = 1;
}

static int
usage(void)
{
    fprintf(stderr, "usage: impair --queue N [--loss PCT] [--burst LEN] [--delay-ms MS] "
                    "[--rate-kbit K] [--queue-ms MS] [--outage-ms MS] [--seed S]\n");
    return 2;
}

int
main(int argc, char **argv)
{
    int queue = -1;
    unsigned seed = (unsigned)time(NULL);
    im.queue_us = 200000;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (i + 1 >= argc)
            return usage();
        double v = strtod(argv[++i], NULL);
        if (!strcmp(a, "--queue"))
            queue = (int)v;
        else if (!strcmp(a, "--loss"))
            im.loss = v / 100.0;
        else if (!strcmp(a, "--burst"))
            im.burst = v;
        else if (!strcmp(a, "--delay-ms"))
            im.delay_us = (int64_t)(v * 1000);
        else if (!strcmp(a, "--rate-kbit"))
            im.rate_bps = v * 1000;
        else if (!strcmp(a, "--queue-ms"))
            im.queue_us = (int64_t)(v * 1000);
        else if (!strcmp(a, "--outage-ms"))
            im.outage_us = (int64_t)(v * 1000);
        else if (!strcmp(a, "--seed"))
            seed = (unsigned)v;
        else
            return usage();
    }
    if (queue < 0 || im.loss < 0 || im.loss >= 1)
        return usage();
    srandom(seed);

    struct nfq_handle *h = nfq_open();
    if (!h) {
        perror("impair: nfq_open");
        return 1;
    }
    struct nfq_q_handle *qh = nfq_create_queue(h, (uint16_t)queue, on_packet, NULL);
    if (!qh) {
        fprintf(stderr, "impair: cannot bind queue %d (root, and a kernel with NFQUEUE?)\n", queue);
        return 1;
    }
    /* The IP and UDP headers are all it reads; the kernel keeps the rest. */
    nfq_set_mode(qh, NFQNL_COPY_PACKET, 64);
    nfq_set_queue_maxlen(qh, MAX_HELD);
    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);

    int fd = nfq_fd(h);
    char buf[4096] __attribute__((aligned));
    fprintf(stderr, "impair: queue %d ready\n", queue);
    fflush(stderr);
    while (!stop_requested) {
        if (outage_requested) {
            outage_requested = 0;
            im.outage_until = now_us() + im.outage_us;
        }
        int64_t now = now_us();
        release_due(qh, now);
        int timeout = 100;
        if (im.n_held) {
            int64_t wait = im.held[0].release_us - now;
            timeout = wait <= 0 ? 0 : (int)((wait + 999) / 1000);
        }
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, timeout) > 0) {
            ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
            if (n > 0)
                nfq_handle_packet(h, buf, (int)n);
            else if (n < 0 && errno == ENOBUFS)
                fprintf(stderr, "impair: the kernel queue overflowed\n");
        }
    }
    release_due(qh, INT64_MAX);
    nfq_destroy_queue(qh);
    nfq_close(h);
    printf("{\"seen\": %lu, \"passed\": %lu, \"lost_random\": %lu, \"lost_queue\": %lu, "
           "\"lost_outage\": %lu, \"lost_full\": %lu, \"bytes\": %llu}\n",
           im.seen, im.passed, im.lost_random, im.lost_queue, im.lost_outage, im.lost_full,
           im.bytes);
    return 0;
}
