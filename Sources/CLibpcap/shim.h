// libpcap: pcap-filter expressions compiled to classic BPF, and libpcap's BPF interpreter.
#include <pcap/pcap.h>
#include <pcap/bpf.h>
