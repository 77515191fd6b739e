/*
 * Command-line flags. Every impairment flag sets both directions; the same
 * flag prefixed with `ab-` (frames from --a to --b) or `ba-` sets one, and
 * the prefixed form wins whatever the order. The same parser reads the
 * commands written to stdin while running (see main.c).
 */
#include "impair.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char impair_usage[] =
  "usage: impair --a IF --b IF [impairments] [--seed N] [--keep-offloads]\n"
  "       impair --offloads-off IF...\n"
  "impairments (both directions; prefix ab- or ba- for one, e.g. --ab-loss 0.1):\n"
  "  --delay-ms MS         one-way delay\n"
  "  --jitter-ms MS        uniform extra delay in [-MS, +MS]; packet order is kept\n"
  "  --loss P              independent loss probability\n"
  "  --burst P,R[,H]       Gilbert-Elliott loss: P good->bad, R bad->good, H loss in bad (default 1); 'off'\n"
  "  --reorder P           probability that a packet is held back (later ones overtake it)\n"
  "  --reorder-ms MS       how long it is held (default 10)\n"
  "  --dup P               probability that a packet is sent twice\n"
  "  --rate-mbit R         bottleneck rate in Mbit/s of frame bytes (0 = unlimited)\n"
  "  --queue-ms MS         drop-tail queue bound in ms at the rate (default 100)\n"
  "  --queue-bytes N       drop-tail queue bound in bytes (instead of --queue-ms)\n"
  "  --overhead N          bytes charged to the rate per frame on top of its length (default 0)\n"
  "  --limit-pkts N        most packets held per direction (default 100000)\n"
  "Non-IP frames (ARP) are delayed and rate-limited but never lost, duplicated or reordered.\n"
  "Counters: one JSON line on SIGUSR1, on the stdin command 'stats', and at exit.\n";

enum kind { K_PROB, K_MS, K_NUM };

struct flag {
  const char *name;
  size_t off;
  enum kind kind;
  double max;
};

#define F(name, field, kind, max) { name, offsetof(struct dir_cfg, field), kind, max }
static const struct flag flags[] = {
  F("delay-ms", delay_ms, K_MS, 600000),
  F("jitter-ms", jitter_ms, K_MS, 600000),
  F("loss", loss, K_PROB, 1),
  F("reorder", reorder, K_PROB, 1),
  F("reorder-ms", reorder_ms, K_MS, 600000),
  F("dup", dup, K_PROB, 1),
  F("rate-mbit", rate_mbit, K_NUM, 1e6),
  F("queue-ms", queue_ms, K_MS, 600000),
  F("queue-bytes", queue_bytes, K_NUM, 1e10),
  F("overhead", overhead, K_NUM, 65536),
  F("limit-pkts", limit_pkts, K_NUM, 1e7),
};
#undef F

void cfg_defaults(struct cfg *c) {
  memset(c, 0, sizeof *c);
  c->seed = 1;
  for (int i = 0; i < 2; i++) {
    c->dir[i].ge_h = 1;
    c->dir[i].reorder_ms = 10;
    c->dir[i].queue_ms = 100;
    c->dir[i].limit_pkts = 100000;
  }
}

static int fail(char *err, size_t errlen, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
  return -1;
}

/* A finite number that uses the whole string. */
static int number(const char *s, double *out) {
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (s[0] == '\0' || *end != '\0' || errno != 0 || !isfinite(v)) return -1;
  *out = v;
  return 0;
}

static int parse_burst(const char *v, const char *shown, struct dir_cfg *d, char *err, size_t errlen) {
  if (strcmp(v, "off") == 0 || strcmp(v, "0") == 0) {
    d->ge_p = 0;
    return 0;
  }
  double x[3] = {0, 0, 1};
  char buf[128];
  if (strlen(v) >= sizeof buf) return fail(err, errlen, "--%s: value too long", shown);
  strcpy(buf, v);
  int n = 0;
  for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
    if (n == 3 || number(tok, &x[n]) != 0 || x[n] < 0 || x[n] > 1)
      return fail(err, errlen, "--%s: expected P,R[,H] with each in [0, 1], got '%s'", shown, v);
    n++;
  }
  if (n < 2) return fail(err, errlen, "--%s: expected P,R[,H], got '%s'", shown, v);
  if (x[0] > 0 && x[1] == 0) return fail(err, errlen, "--%s: R (bad->good) must be > 0, or the link never recovers", shown);
  d->ge_p = x[0];
  d->ge_r = x[1];
  d->ge_h = x[2];
  return 0;
}

/* Whether `name` (without ab-/ba-) is an impairment flag. */
static bool impairment(const char *name) {
  if (strcmp(name, "burst") == 0) return true;
  for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++)
    if (strcmp(name, flags[i].name) == 0) return true;
  return false;
}

/* Sets one impairment flag (name without prefix) on d; mask notes queue flags. */
static int set_flag(struct dir_cfg *d, const char *name, const char *shown, const char *v, unsigned *mask, char *err, size_t errlen) {
  if (strcmp(name, "burst") == 0) return parse_burst(v, shown, d, err, errlen);
  for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++) {
    const struct flag *f = &flags[i];
    if (strcmp(name, f->name) != 0) continue;
    double x;
    if (number(v, &x) != 0) return fail(err, errlen, "--%s: '%s' is not a number", shown, v);
    if (x < 0 || x > f->max) return fail(err, errlen, "--%s: %s is outside [0, %g]", shown, v, f->max);
    if (strcmp(name, "limit-pkts") == 0 && x < 1) return fail(err, errlen, "--%s: must be at least 1", shown);
    if (strcmp(name, "queue-ms") == 0) {
      *mask |= 1;
      d->queue_bytes = 0;
    } else if (strcmp(name, "queue-bytes") == 0) {
      *mask |= 2;
    }
    if (*mask == 3) return fail(err, errlen, "--queue-ms and --queue-bytes both given: pick one");
    *(double *)((char *)d + f->off) = x;
    return 0;
  }
  return fail(err, errlen, "unknown flag --%s (see --help)", shown);
}

int cfg_parse(struct cfg *c, int argc, char **argv, bool runtime, char *err, size_t errlen) {
  struct cfg next = *c;
  /* Pass 0 applies the flags for both directions, pass 1 the ab-/ba- ones. */
  for (int pass = 0; pass < 2; pass++) {
    unsigned mask[2] = {0, 0};
    for (int i = 0; i < argc; i++) {
      const char *arg = argv[i];
      if (strncmp(arg, "--", 2) != 0 || arg[2] == '\0') return fail(err, errlen, "unexpected argument '%s' (see --help)", arg);
      char name[64];
      const char *eq = strchr(arg, '=');
      size_t nlen = eq ? (size_t)(eq - arg - 2) : strlen(arg + 2);
      if (nlen >= sizeof name) return fail(err, errlen, "unknown flag '%s'", arg);
      memcpy(name, arg + 2, nlen);
      name[nlen] = '\0';
      if (strcmp(name, "keep-offloads") == 0 && !eq) {
        if (runtime) return fail(err, errlen, "--keep-offloads cannot change while running");
        next.keep_offloads = true;
        continue;
      }
      bool global = strcmp(name, "a") == 0 || strcmp(name, "b") == 0 || strcmp(name, "seed") == 0;
      const char *base = strncmp(name, "ab-", 3) == 0 || strncmp(name, "ba-", 3) == 0 ? name + 3 : name;
      if (!global && !impairment(base)) return fail(err, errlen, "unknown flag --%s (see --help)", name);
      const char *v = eq ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
      if (v == NULL) return fail(err, errlen, "--%s needs a value", name);
      if (global) {
        if (runtime) return fail(err, errlen, "--%s cannot change while running", name);
        if (pass == 1) continue;
        if (strcmp(name, "seed") == 0) {
          char *end;
          errno = 0;
          unsigned long long s = strtoull(v, &end, 0);
          if (v[0] == '\0' || v[0] == '-' || *end != '\0' || errno != 0) return fail(err, errlen, "--seed: '%s' is not an unsigned integer", v);
          next.seed = s;
        } else if (v[0] == '\0' || strlen(v) >= 16) {
          return fail(err, errlen, "--%s: '%s' is not an interface name", name, v);
        } else if (name[0] == 'a') {
          next.if_a = v;
        } else {
          next.if_b = v;
        }
        continue;
      }
      int only = base == name ? -1 : name[0] == 'a' ? DIR_AB : DIR_BA;
      if ((pass == 0) != (only < 0)) {
        /* Not this pass's flag, but check it now so errors name the first bad flag. */
        struct dir_cfg scratch = next.dir[0];
        unsigned m = 0;
        if (set_flag(&scratch, base, name, v, &m, err, errlen) != 0) return -1;
        continue;
      }
      for (int d = 0; d < 2; d++) {
        if (only >= 0 && d != only) continue;
        if (set_flag(&next.dir[d], base, name, v, &mask[d], err, errlen) != 0) return -1;
      }
    }
  }
  if (!runtime && (next.if_a == NULL || next.if_b == NULL)) return fail(err, errlen, "--a and --b (the two interfaces) are required");
  if (!runtime && strcmp(next.if_a, next.if_b) == 0) return fail(err, errlen, "--a and --b must be different interfaces");
  *c = next;
  return 0;
}

int cfg_json(const struct dir_cfg *d, char *out, size_t outlen) {
  return snprintf(out, outlen,
                  "{\"delay_ms\":%g,\"jitter_ms\":%g,\"loss\":%g,\"burst\":[%g,%g,%g],\"reorder\":%g,\"reorder_ms\":%g,"
                  "\"dup\":%g,\"rate_mbit\":%g,\"queue_ms\":%g,\"queue_bytes\":%g,\"overhead\":%g,\"limit_pkts\":%g}",
                  d->delay_ms, d->jitter_ms, d->loss, d->ge_p, d->ge_r, d->ge_h, d->reorder, d->reorder_ms, d->dup,
                  d->rate_mbit, d->queue_bytes > 0 ? 0 : d->queue_ms, d->queue_bytes, d->overhead, d->limit_pkts);
}
