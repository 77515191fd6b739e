/*
 * impair's process: two AF_PACKET sockets (one per veth), one event loop.
 * Frames read on --a go through the ab pipeline and out of --b, and back.
 *
 * The sockets use the virtio-net header (PACKET_VNET_HDR): a sender with
 * checksum offload hands over frames whose TCP/UDP checksum is only
 * partial, and the header's csum_start/csum_offset travel with the frame to
 * the other veth, whose receiver treats it as a local, verified packet —
 * the bridge never rewrites a byte.
 *
 * stdin takes commands, one per line: impairment flags (as on the command
 * line, e.g. `--ab-loss 0.5`) answered by a `config` line, or `stats`.
 * Every answer, and the counters on SIGUSR1 and at exit, is one JSON line
 * on stdout. Exit codes: 0 after SIGTERM/SIGINT, 1 runtime error, 2 usage.
 */
#include "impair.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define RX_MAX (256 * 1024)
#define VH sizeof(struct virtio_net_hdr)

static struct cfg cfg;
static struct dir_state dirs[2];
static int socks[2];          /* socks[0] on --a (reads ab, sends ba), socks[1] on --b */
static bool blocked[2];       /* direction d's output socket said EAGAIN: wait for POLLOUT */
static uint64_t started_ns;

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static void die(const char *what) {
  fprintf(stderr, "impair: %s: %s\n", what, strerror(errno));
  exit(1);
}

static int open_socket(const char *ifname) {
  unsigned idx = if_nametoindex(ifname);
  if (idx == 0) {
    fprintf(stderr, "impair: no interface '%s' in this namespace\n", ifname);
    exit(1);
  }
  /* Protocol 0 until bound: no frames from other interfaces slip in first. */
  int s = socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (s < 0) die("socket(AF_PACKET)");
  int one = 1, buf = 8 << 20;
  if (setsockopt(s, SOL_PACKET, PACKET_VNET_HDR, &one, sizeof one) != 0) die("PACKET_VNET_HDR");
  /* Our own sends would come back as outgoing frames; the loop skips those too. */
  (void)setsockopt(s, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof one);
  if (setsockopt(s, SOL_SOCKET, SO_RCVBUFFORCE, &buf, sizeof buf) != 0) (void)setsockopt(s, SOL_SOCKET, SO_RCVBUF, &buf, sizeof buf);
  if (setsockopt(s, SOL_SOCKET, SO_SNDBUFFORCE, &buf, sizeof buf) != 0) (void)setsockopt(s, SOL_SOCKET, SO_SNDBUF, &buf, sizeof buf);
  struct sockaddr_ll sll = {.sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_ALL), .sll_ifindex = (int)idx};
  if (bind(s, (struct sockaddr *)&sll, sizeof sll) != 0) die("bind(AF_PACKET)");
  /* A veth delivers every frame anyway; promiscuous mode only matters on other devices. */
  struct packet_mreq mr = {.mr_ifindex = (int)idx, .mr_type = PACKET_MR_PROMISC};
  (void)setsockopt(s, SOL_PACKET, PACKET_ADD_MEMBERSHIP, &mr, sizeof mr);
  return s;
}

static void print_config(const char *type) {
  char ab[1024], ba[1024];
  cfg_json(&cfg.dir[DIR_AB], ab, sizeof ab);
  cfg_json(&cfg.dir[DIR_BA], ba, sizeof ba);
  printf("{\"type\":\"%s\",\"a\":\"%s\",\"b\":\"%s\",\"seed\":%llu,\"ab\":%s,\"ba\":%s}\n", type, cfg.if_a, cfg.if_b,
         (unsigned long long)cfg.seed, ab, ba);
  fflush(stdout);
}

static void print_stats(bool final) {
  for (int d = 0; d < 2; d++) {
    struct tpacket_stats ts;
    socklen_t len = sizeof ts;
    /* Reading resets the kernel's counters: accumulate. */
    if (getsockopt(socks[d], SOL_PACKET, PACKET_STATISTICS, &ts, &len) == 0) dirs[d].st.kernel_drops += ts.tp_drops;
  }
  char ab[1024], ba[1024];
  stats_json(&dirs[DIR_AB].st, dirs[DIR_AB].n, ab, sizeof ab);
  stats_json(&dirs[DIR_BA].st, dirs[DIR_BA].n, ba, sizeof ba);
  printf("{\"type\":\"stats\",\"final\":%s,\"uptime_ms\":%.1f,\"ab\":%s,\"ba\":%s}\n", final ? "true" : "false",
         (double)(now_ns() - started_ns) / 1e6, ab, ba);
  fflush(stdout);
}

/* Reads everything waiting on socks[d] (frames travelling in direction d). */
static void receive(int d) {
  static unsigned char buf[VH + RX_MAX];
  for (int n = 0; n < 512; n++) {
    struct sockaddr_ll from;
    socklen_t fromlen = sizeof from;
    ssize_t got = recvfrom(socks[d], buf, sizeof buf, MSG_TRUNC, (struct sockaddr *)&from, &fromlen);
    if (got < 0) {
      if (errno == EAGAIN || errno == EINTR) return;
      die("recvfrom");
    }
    if (from.sll_pkttype == PACKET_OUTGOING || (size_t)got < VH) continue;
    struct virtio_net_hdr vh;
    memcpy(&vh, buf, VH);
    if ((size_t)got > sizeof buf) {
      dirs[d].st.rx++;
      dirs[d].st.drop_gso++;
      continue;
    }
    dir_arrive(&dirs[d], &cfg.dir[d], &vh, buf + VH, (size_t)got - VH, now_ns());
  }
}

/* Sends direction d's due frames; returns ns until the next one, or -1. */
static int64_t release(int d, uint64_t now) {
  struct dir_state *ds = &dirs[d];
  for (struct pkt *p; (p = dir_peek(ds)) != NULL;) {
    if (p->release_ns > now) return (int64_t)(p->release_ns - now);
    if (blocked[d]) return -1;
    struct virtio_net_hdr vh = {.flags = p->vh.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM,
                                .csum_start = p->vh.csum_start, .csum_offset = p->vh.csum_offset};
    struct iovec iov[2] = {{&vh, VH}, {p->data, p->len}};
    struct msghdr mh = {.msg_iov = iov, .msg_iovlen = 2};
    if (sendmsg(socks[1 - d], &mh, MSG_DONTWAIT) < 0) {
      if (errno == EAGAIN) {
        blocked[d] = true;
        return -1;
      }
      if (errno == EINTR) continue;
      /* ENOBUFS: the receiving veth's backlog is full, a drop like any real NIC's. */
      ds->st.drop_send++;
    } else {
      ds->st.tx++;
      ds->st.tx_bytes += p->len;
    }
    free(dir_pop(ds));
  }
  return -1;
}

/* Runs one stdin line: flags, or `stats`. */
static void command(char *line) {
  char *argv[64];
  int argc = 0;
  for (char *save = NULL, *tok = strtok_r(line, " \t\r", &save); tok; tok = strtok_r(NULL, " \t\r", &save)) {
    if (argc == 64) {
      printf("{\"type\":\"error\",\"error\":\"too many words\"}\n");
      fflush(stdout);
      return;
    }
    argv[argc++] = tok;
  }
  if (argc == 0) return;
  if (argc == 1 && strcmp(argv[0], "stats") == 0) {
    print_stats(false);
    return;
  }
  char err[256];
  if (cfg_parse(&cfg, argc, argv, true, err, sizeof err) != 0) {
    for (char *c = err; *c; c++) if (*c == '"' || *c == '\\') *c = '\'';
    printf("{\"type\":\"error\",\"error\":\"%s\"}\n", err);
    fflush(stdout);
    return;
  }
  print_config("config");
}

/* Reads stdin; returns false at end of input. */
static bool read_commands(void) {
  static char buf[4096];
  static size_t have;
  ssize_t got = read(STDIN_FILENO, buf + have, sizeof buf - 1 - have);
  if (got <= 0) return got < 0 && (errno == EAGAIN || errno == EINTR);
  have += (size_t)got;
  buf[have] = '\0';
  char *start = buf;
  for (char *nl; (nl = strchr(start, '\n')) != NULL; start = nl + 1) {
    *nl = '\0';
    command(start);
  }
  have -= (size_t)(start - buf);
  memmove(buf, start, have);
  if (have == sizeof buf - 1) have = 0; /* a line too long to be a command */
  return true;
}

int main(int argc, char **argv) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (argc > 1 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
    fputs(impair_usage, stdout);
    return 0;
  }
  if (argc > 1 && strcmp(argv[1], "--offloads-off") == 0) {
    if (argc == 2) {
      fprintf(stderr, "impair: --offloads-off needs interface names\n");
      return 2;
    }
    int rc = 0;
    for (int i = 2; i < argc; i++) {
      char out[1024];
      if (offloads_off(argv[i], out, sizeof out) != 0) rc = 1;
      printf("{\"type\":\"offloads\",\"result\":%s}\n", out);
    }
    return rc;
  }
  cfg_defaults(&cfg);
  char err[256];
  if (cfg_parse(&cfg, argc - 1, argv + 1, false, err, sizeof err) != 0) {
    fprintf(stderr, "impair: %s\n", err);
    return 2;
  }
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGUSR1);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGINT);
  sigaddset(&mask, SIGHUP);
  if (sigprocmask(SIG_BLOCK, &mask, NULL) != 0) die("sigprocmask");
  int sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
  if (sfd < 0) die("signalfd");
  signal(SIGPIPE, SIG_IGN);
  /* Sub-millisecond release times need the kernel's default 50 µs timer slack gone. */
  (void)prctl(PR_SET_TIMERSLACK, 1000UL);
  if (!cfg.keep_offloads) {
    for (int i = 0; i < 2; i++) {
      char out[1024];
      if (offloads_off(i ? cfg.if_b : cfg.if_a, out, sizeof out) != 0) fprintf(stderr, "impair: warning: offloads: %s\n", out);
    }
  }
  socks[0] = open_socket(cfg.if_a);
  socks[1] = open_socket(cfg.if_b);
  dir_init(&dirs[DIR_AB], cfg.seed, DIR_AB);
  dir_init(&dirs[DIR_BA], cfg.seed, DIR_BA);
  started_ns = now_ns();
  print_config("ready");

  bool stdin_open = true;
  for (;;) {
    uint64_t now = now_ns();
    int64_t wait = -1;
    for (int d = 0; d < 2; d++) {
      int64_t w = release(d, now);
      if (w >= 0 && (wait < 0 || w < wait)) wait = w;
    }
    struct pollfd fds[4] = {
      {socks[0], (short)(POLLIN | (blocked[DIR_BA] ? POLLOUT : 0)), 0},
      {socks[1], (short)(POLLIN | (blocked[DIR_AB] ? POLLOUT : 0)), 0},
      {sfd, POLLIN, 0},
      {stdin_open ? STDIN_FILENO : -1, POLLIN, 0},
    };
    struct timespec ts = {wait / 1000000000, wait % 1000000000};
    if (ppoll(fds, 4, wait >= 0 ? &ts : NULL, NULL) < 0) {
      if (errno == EINTR) continue;
      die("ppoll");
    }
    if (fds[0].revents & POLLOUT) blocked[DIR_BA] = false;
    if (fds[1].revents & POLLOUT) blocked[DIR_AB] = false;
    if (fds[0].revents & (POLLERR | POLLHUP)) die("socket on --a failed (interface gone?)");
    if (fds[1].revents & (POLLERR | POLLHUP)) die("socket on --b failed (interface gone?)");
    if (fds[0].revents & POLLIN) receive(DIR_AB);
    if (fds[1].revents & POLLIN) receive(DIR_BA);
    if (fds[3].revents & (POLLIN | POLLHUP)) stdin_open = read_commands();
    if (fds[2].revents & POLLIN) {
      struct signalfd_siginfo si;
      while (read(sfd, &si, sizeof si) == (ssize_t)sizeof si) {
        if (si.ssi_signo == SIGUSR1) {
          print_stats(false);
        } else if (si.ssi_signo != SIGHUP) {
          print_stats(true);
          return 0;
        }
      }
    }
  }
}
