package metrics

import (
	"strings"
	"testing"
)

func TestSnakeCase(t *testing.T) {
	for in, want := range map[string]string{
		"TCP": "tcp", "Retransmits": "retransmits", "SACKRecovery": "sack_recovery", "TLPRecovery": "tlp_recovery",
		"MalformedL4RcvdPackets": "malformed_l4_rcvd_packets", "V4": "v4", "IPTablesInputDropped": "ip_tables_input_dropped",
		"NICs": "nics", "SegmentsAckedWithDSACK": "segments_acked_with_dsack", "V2MembershipReport": "v2_membership_report",
		"CurrentEstablished": "current_established",
	} {
		if got := snakeCase(in); got != want {
			t.Errorf("snakeCase(%q) = %q, want %q", in, got, want)
		}
	}
	m := stackMetric("ICMP.V4.PacketsSent.ICMPv4PacketStats.EchoReply")
	if m.name != "zcnet_stack_icmp_v4_packets_sent_total" || strings.Join(m.labels, "=") != "type=echo_reply" {
		t.Errorf("ICMP counter: %+v", m)
	}
	if m := stackMetric("TCP.CurrentEstablished"); m.name != "zcnet_stack_tcp_current_established" || !m.gauge {
		t.Errorf("gauge: %+v", m)
	}
}
