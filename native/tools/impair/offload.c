/*
 * `ethtool -K IF tso off gso off gro off …` without ethtool (not installed
 * everywhere the lab runs): the same SIOCETHTOOL feature calls, by name.
 * With segmentation offloads on, a veth hands a 64 KiB TCP super-frame to
 * the bridge, which could only drop or pass it whole; with them off the
 * sender's kernel cuts it into MTU-sized frames before the veth.
 * Checksum offload stays on: the packet socket's virtio header carries the
 * partial checksum across the bridge (see main.c).
 */
#include "impair.h"

#include <linux/ethtool.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>
#include <errno.h>

static const char *const off_names[] = {
  "tx-tcp-segmentation", "tx-tcp-ecn-segmentation", "tx-tcp-mangleid-segmentation", "tx-tcp6-segmentation",
  "tx-generic-segmentation", "tx-udp-segmentation", "tx-gso-list", "rx-gro", "rx-gro-list",
  "rx-udp-gro-forwarding", "rx-lro", "rx-gro-hw",
};
#define N_OFF (sizeof off_names / sizeof off_names[0])

static int ethtool(int fd, const char *ifname, void *data) {
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", ifname);
  ifr.ifr_data = data;
  return ioctl(fd, SIOCETHTOOL, &ifr);
}

int offloads_off(const char *ifname, char *out, size_t outlen) {
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return snprintf(out, outlen, "{\"if\":\"%s\",\"error\":\"socket: %s\"}", ifname, strerror(errno)), -1;
  int rc = -1, idx[N_OFF];
  char *strings = NULL;
  struct ethtool_sfeatures *set = NULL;
  struct ethtool_gfeatures *get = NULL;
  struct {
    struct ethtool_sset_info hdr;
    uint32_t len;
  } info = {{.cmd = ETHTOOL_GSSET_INFO, .sset_mask = 1ULL << ETH_SS_FEATURES}, 0};
  if (ethtool(fd, ifname, &info) != 0 || info.hdr.sset_mask == 0) {
    snprintf(out, outlen, "{\"if\":\"%s\",\"error\":\"feature names: %s\"}", ifname, strerror(errno));
    goto done;
  }
  uint32_t count = info.len, blocks = (count + 31) / 32;
  struct ethtool_gstrings *gs = malloc(sizeof *gs + (size_t)count * ETH_GSTRING_LEN);
  strings = (char *)gs;
  set = calloc(1, sizeof *set + blocks * sizeof set->features[0]);
  get = calloc(1, sizeof *get + blocks * sizeof get->features[0]);
  if (!gs || !set || !get) {
    snprintf(out, outlen, "{\"if\":\"%s\",\"error\":\"out of memory\"}", ifname);
    goto done;
  }
  gs->cmd = ETHTOOL_GSTRINGS;
  gs->string_set = ETH_SS_FEATURES;
  gs->len = count;
  if (ethtool(fd, ifname, gs) != 0) {
    snprintf(out, outlen, "{\"if\":\"%s\",\"error\":\"feature names: %s\"}", ifname, strerror(errno));
    goto done;
  }
  set->cmd = ETHTOOL_SFEATURES;
  set->size = blocks;
  for (size_t n = 0; n < N_OFF; n++) {
    idx[n] = -1;
    for (uint32_t i = 0; i < count; i++) {
      if (strncmp((char *)gs->data + (size_t)i * ETH_GSTRING_LEN, off_names[n], ETH_GSTRING_LEN) == 0) {
        idx[n] = (int)i;
        set->features[i / 32].valid |= 1U << (i % 32);
        break;
      }
    }
  }
  /* A positive answer (ETHTOOL_F_WISH) means some could not change: checked below. */
  if (ethtool(fd, ifname, set) < 0) {
    snprintf(out, outlen, "{\"if\":\"%s\",\"error\":\"set features: %s\"}", ifname, strerror(errno));
    goto done;
  }
  get->cmd = ETHTOOL_GFEATURES;
  get->size = blocks;
  if (ethtool(fd, ifname, get) != 0) {
    snprintf(out, outlen, "{\"if\":\"%s\",\"error\":\"get features: %s\"}", ifname, strerror(errno));
    goto done;
  }
  size_t used = (size_t)snprintf(out, outlen, "{\"if\":\"%s\",\"still_on\":[", ifname);
  bool first = true;
  rc = 0;
  for (size_t n = 0; n < N_OFF; n++) {
    int i = idx[n];
    if (i < 0 || !(get->features[i / 32].active & (1U << (i % 32)))) continue;
    rc = -1;
    if (used < outlen) used += (size_t)snprintf(out + used, outlen - used, "%s\"%s\"", first ? "" : ",", off_names[n]);
    first = false;
  }
  if (used < outlen) snprintf(out + used, outlen - used, "]}");
done:
  free(strings);
  free(set);
  free(get);
  close(fd);
  return rc;
}
