/* udpframe.h: the IPv4/UDP test frame the bench's load programs send (udpgen.c, uringwritefloor.c):
 * Ethernet + IPv4 (checksummed) + UDP (checksum 0, optional in IPv4) + a "tapbridge-bench" tag,
 * zero-padded to `len` bytes (FCS excluded). One builder, so every row offers the same frames. */
#ifndef UDPFRAME_H
#define UDPFRAME_H
#include <arpa/inet.h>
#include <net/ethernet.h>
#include <netinet/ip.h>
#include <netinet/udp.h>
#include <stdint.h>
#include <string.h>

static uint16_t ip_checksum(const void *data, size_t len) {
    const uint16_t *p = data;
    uint32_t sum = 0;
    for (; len > 1; len -= 2) sum += *p++;
    while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
    return (uint16_t)~sum;
}

static void build_udp_frame(uint8_t *out, size_t len, const uint8_t *src_mac, const uint8_t *dst_mac,
                            struct in_addr src, struct in_addr dst, uint16_t sport, uint16_t dport) {
    memset(out, 0, len);
    struct ether_header *eth = (void *)out;
    memcpy(eth->ether_dhost, dst_mac, 6);
    memcpy(eth->ether_shost, src_mac, 6);
    eth->ether_type = htons(ETHERTYPE_IP);
    struct iphdr *ip = (void *)(out + sizeof *eth);
    ip->version = 4; ip->ihl = 5; ip->ttl = 64; ip->protocol = IPPROTO_UDP;
    ip->tot_len = htons((uint16_t)(len - sizeof *eth));
    ip->saddr = src.s_addr; ip->daddr = dst.s_addr;
    ip->check = ip_checksum(ip, sizeof *ip);
    struct udphdr *udp = (void *)(ip + 1);
    udp->source = htons(sport); udp->dest = htons(dport);
    udp->len = htons((uint16_t)(len - sizeof *eth - sizeof *ip));
    udp->check = 0;
    size_t room = len - sizeof *eth - sizeof *ip - sizeof *udp;
    memcpy(udp + 1, "tapbridge-bench", room < 15 ? room : 15);
}
#endif
