/*
 * One direction of the emulated link: the random decisions, the bottleneck
 * and the delay line. Each arriving frame gets its release time at once
 * (sans-IO: time is passed in), and a min-heap on (release, arrival order)
 * hands frames to main.c when they are due.
 *
 * The bottleneck is a virtual clock, not a periodic token refill: the link
 * is busy until `link_free_ns`, a frame starts when the link frees up and
 * holds it for (len + overhead) * 8 / rate. The backlog on arrival is
 * therefore (link_free - now) * rate, which is what the drop-tail bound is
 * checked against. The rate is exact (no refill granularity, no burst
 * allowance), and frames leave in the order they were served.
 */
#include "impair.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* xoshiro256** seeded by splitmix64: small, fast, reproducible. */
static uint64_t splitmix(uint64_t *x) {
  uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static double uniform(uint64_t *s) {
  uint64_t r = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl(s[3], 45);
  return (double)(r >> 11) * 0x1.0p-53;
}

void dir_init(struct dir_state *d, uint64_t seed, int which) {
  memset(d, 0, sizeof *d);
  /* Each direction has its own stream: traffic one way never shifts the other's draws. */
  uint64_t x = seed ^ (which ? 0x5851f42d4c957f2dULL : 0);
  for (int i = 0; i < 4; i++) d->rng[i] = splitmix(&x);
}

static bool earlier(const struct pkt *a, const struct pkt *b) {
  return a->release_ns < b->release_ns || (a->release_ns == b->release_ns && a->seq < b->seq);
}

static int heap_push(struct dir_state *d, struct pkt *p) {
  if (d->n == d->cap) {
    size_t cap = d->cap ? d->cap * 2 : 1024;
    struct pkt **h = realloc(d->heap, cap * sizeof *h);
    if (!h) return -1;
    d->heap = h;
    d->cap = cap;
  }
  size_t i = d->n++;
  while (i > 0) {
    size_t parent = (i - 1) / 2;
    if (!earlier(p, d->heap[parent])) break;
    d->heap[i] = d->heap[parent];
    i = parent;
  }
  d->heap[i] = p;
  return 0;
}

struct pkt *dir_pop(struct dir_state *d) {
  if (d->n == 0) return NULL;
  struct pkt *top = d->heap[0], *last = d->heap[--d->n];
  size_t i = 0;
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= d->n) break;
    if (c + 1 < d->n && earlier(d->heap[c + 1], d->heap[c])) c++;
    if (!earlier(d->heap[c], last)) break;
    d->heap[i] = d->heap[c];
    i = c;
  }
  if (d->n) d->heap[i] = last;
  return top;
}

/* Puts one copy through the bottleneck and the delay line. */
static void enqueue(struct dir_state *d, const struct dir_cfg *c, const struct virtio_net_hdr *vh,
                    const unsigned char *frame, size_t len, uint64_t now, bool held) {
  if (d->n >= (size_t)c->limit_pkts) {
    d->st.drop_limit++;
    return;
  }
  double done = (double)now;
  if (c->rate_mbit > 0) {
    double bits_per_ns = c->rate_mbit * 1e-3;
    double start = d->link_free_ns > done ? d->link_free_ns : done;
    double backlog_bytes = (start - done) * bits_per_ns / 8;
    double limit = c->queue_bytes > 0 ? c->queue_bytes : c->queue_ms * 1e6 * bits_per_ns / 8;
    double wire = (double)len + c->overhead;
    /* Drop-tail: a frame that does not fit is dropped, unless the queue is empty. */
    if (backlog_bytes > 0 && backlog_bytes + wire > limit) {
      d->st.drop_queue++;
      return;
    }
    done = start + wire * 8 / bits_per_ns;
    d->link_free_ns = done;
  }
  double delay = c->delay_ms * 1e6;
  if (c->jitter_ms > 0) delay += (uniform(d->rng) * 2 - 1) * c->jitter_ms * 1e6;
  uint64_t release = (uint64_t)(done + (delay > 0 ? delay : 0));
  if (held) {
    /* Held back off the in-order line, so the frames behind it overtake it. */
    release += (uint64_t)(c->reorder_ms * 1e6);
  } else {
    /* Jitter moves frames in time but keeps their order (reordering is its own knob). */
    if (release < d->last_release) release = d->last_release;
    d->last_release = release;
  }
  struct pkt *p = malloc(sizeof *p + len);
  if (!p) {
    d->st.drop_limit++;
    return;
  }
  p->release_ns = release;
  p->seq = d->seq++;
  p->vh = *vh;
  p->len = (uint32_t)len;
  memcpy(p->data, frame, len);
  if (heap_push(d, p) != 0) {
    free(p);
    d->st.drop_limit++;
  }
}

void dir_arrive(struct dir_state *d, const struct dir_cfg *c, const struct virtio_net_hdr *vh,
                const unsigned char *frame, size_t len, uint64_t now) {
  d->st.rx++;
  d->st.rx_bytes += len;
  if (vh->gso_type != VIRTIO_NET_HDR_GSO_NONE) {
    /* A super-frame (offloads left on at the sender): no per-packet loss is possible. */
    d->st.drop_gso++;
    return;
  }
  uint16_t type = len >= 14 ? (uint16_t)(frame[12] << 8 | frame[13]) : 0;
  if (type == 0x8100 && len >= 18) type = (uint16_t)(frame[16] << 8 | frame[17]);
  if (type != 0x0800 && type != 0x86dd) {
    d->st.non_ip++;
    enqueue(d, c, vh, frame, len, now, false);
    return;
  }
  if (c->ge_p > 0) {
    /* Gilbert-Elliott: move the chain one step, then lose with the state's probability. */
    if (d->ge_bad) d->ge_bad = !(uniform(d->rng) < c->ge_r);
    else d->ge_bad = uniform(d->rng) < c->ge_p;
    if (d->ge_bad && uniform(d->rng) < c->ge_h) {
      d->st.drop_burst++;
      return;
    }
  }
  if (c->loss > 0 && uniform(d->rng) < c->loss) {
    d->st.drop_loss++;
    return;
  }
  /* A duplicate is the same frame again right behind the original, held back with it if it is. */
  bool twice = c->dup > 0 && uniform(d->rng) < c->dup;
  bool held = c->reorder > 0 && uniform(d->rng) < c->reorder;
  d->st.reordered += held;
  enqueue(d, c, vh, frame, len, now, held);
  if (twice) {
    d->st.dup++;
    enqueue(d, c, vh, frame, len, now, held);
  }
}

int stats_json(const struct dir_stats *s, size_t queued, char *out, size_t outlen) {
  return snprintf(out, outlen,
                  "{\"rx\":%llu,\"rx_bytes\":%llu,\"tx\":%llu,\"tx_bytes\":%llu,\"non_ip\":%llu,\"dup\":%llu,\"reordered\":%llu,"
                  "\"queued\":%zu,\"drop\":{\"loss\":%llu,\"burst\":%llu,\"queue\":%llu,\"limit\":%llu,\"gso\":%llu,\"send\":%llu,"
                  "\"kernel\":%llu}}",
                  (unsigned long long)s->rx, (unsigned long long)s->rx_bytes, (unsigned long long)s->tx,
                  (unsigned long long)s->tx_bytes, (unsigned long long)s->non_ip, (unsigned long long)s->dup,
                  (unsigned long long)s->reordered, queued, (unsigned long long)s->drop_loss,
                  (unsigned long long)s->drop_burst, (unsigned long long)s->drop_queue, (unsigned long long)s->drop_limit,
                  (unsigned long long)s->drop_gso, (unsigned long long)s->drop_send, (unsigned long long)s->kernel_drops);
}
