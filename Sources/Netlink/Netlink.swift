// Netlink: placeholder until its first real file lands.
enum _NetlinkPlaceholder {}
