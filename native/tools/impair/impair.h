/*
 * impair: a userspace link emulator for the lab (this kernel has no netem).
 * It runs in a middle namespace between two veths and forwards every
 * Ethernet frame from one to the other through a per-direction impairment
 * pipeline, so TCP and UDP alike see per-packet loss, delay and a
 * rate-limited bottleneck queue:
 *
 *   frame in ─▶ Gilbert-Elliott burst loss ─▶ random loss ─▶ duplicate?
 *            ─▶ bottleneck: drop-tail queue (bytes or ms) served at the rate
 *            ─▶ delay ± jitter (order kept) ─▶ reorder hold (overtaken) ─▶ out
 *
 * Non-IP frames (ARP) pass the bottleneck and the delay but are never lost,
 * duplicated or reordered, so neighbour resolution cannot stall a test.
 * Files: config.c (flags), link.c (the pipeline), offload.c (ethtool
 * features), main.c (sockets, event loop, JSON counters).
 */
#ifndef IMPAIR_H
#define IMPAIR_H

#include <linux/virtio_net.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum { DIR_AB = 0, DIR_BA = 1 };

/** One direction's impairments (all as given on the command line). */
struct dir_cfg {
  double delay_ms;     /* one-way delay */
  double jitter_ms;    /* uniform in [-jitter, +jitter], order kept */
  double loss;         /* independent loss probability */
  double ge_p;         /* Gilbert-Elliott: P(good -> bad) per packet; 0 = off */
  double ge_r;         /* P(bad -> good) */
  double ge_h;         /* loss probability in the bad state */
  double reorder;      /* probability that a packet is held back */
  double reorder_ms;   /* how long it is held, so later packets overtake it */
  double dup;          /* probability that a packet is sent twice */
  double rate_mbit;    /* bottleneck rate, 0 = unlimited */
  double queue_ms;     /* queue bound in ms of the rate (when queue_bytes is 0) */
  double queue_bytes;  /* queue bound in bytes; > 0 overrides queue_ms */
  double overhead;     /* bytes added to each frame when charging the rate */
  double limit_pkts;   /* most packets held in this direction at once */
};

struct cfg {
  const char *if_a, *if_b;
  uint64_t seed;
  bool keep_offloads;
  struct dir_cfg dir[2];
};

/* config.c */
void cfg_defaults(struct cfg *c);
/* Applies flags onto c (unchanged on error, message in err). `runtime`
 * refuses the flags that cannot change once running (--a, --b, --seed). */
int cfg_parse(struct cfg *c, int argc, char **argv, bool runtime, char *err, size_t errlen);
/* Writes a direction's settings as a JSON object. */
int cfg_json(const struct dir_cfg *d, char *out, size_t outlen);
extern const char impair_usage[];

/* link.c */
struct pkt {
  uint64_t release_ns;
  uint64_t seq;
  struct virtio_net_hdr vh;
  uint32_t len;
  unsigned char data[];
};

struct dir_stats {
  uint64_t rx, rx_bytes, tx, tx_bytes;
  uint64_t non_ip;     /* ARP and other non-IP frames (never randomly impaired) */
  uint64_t dup, reordered;
  uint64_t drop_loss, drop_burst, drop_queue, drop_limit, drop_gso, drop_send;
  uint64_t kernel_drops; /* frames the packet socket itself dropped (PACKET_STATISTICS) */
};

struct dir_state {
  uint64_t rng[4];
  bool ge_bad;
  double link_free_ns;   /* when the bottleneck finishes its backlog */
  uint64_t last_release; /* release time of the last in-order packet */
  uint64_t seq;
  struct pkt **heap;
  size_t n, cap;
  struct dir_stats st;
};

void dir_init(struct dir_state *d, uint64_t seed, int which);
/* A frame arrived at `now_ns`; queues zero, one or two copies. */
void dir_arrive(struct dir_state *d, const struct dir_cfg *c, const struct virtio_net_hdr *vh,
                const unsigned char *frame, size_t len, uint64_t now_ns);
static inline struct pkt *dir_peek(const struct dir_state *d) { return d->n ? d->heap[0] : NULL; }
struct pkt *dir_pop(struct dir_state *d);
int stats_json(const struct dir_stats *s, size_t queued, char *out, size_t outlen);

/* offload.c: turns segmentation and receive-coalescing offloads off, so
 * frames stay within the MTU and loss applies per packet. Writes a JSON
 * report; returns 0, or -1 (message in the report) when it could not. */
int offloads_off(const char *ifname, char *out, size_t outlen);

#endif
