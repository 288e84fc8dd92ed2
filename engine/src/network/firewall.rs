//! hutch's nftables table in the bridge netns, rebuilt whole (one atomic
//! batch) whenever networks change, so removing a network leaves nothing
//! of it behind.

use std::io;

use super::nft::{self, expr, BaseChain, Batch, Expr, Hook};
use super::podside::TABLE;
use super::relay;
use super::state::NetworkRecord;
use super::UplinkMode;

const TCP: u8 = 6;
const UDP: u8 = 17;

/// The batch that makes the table match `networks` under `mode`.
pub fn batch(networks: &[NetworkRecord], mode: UplinkMode) -> Batch {
    let f = nft::FAMILY_IP;
    let mut b = Batch::new();
    b.reset_table(f, TABLE);
    // Networks are isolated from each other and internal ones from
    // everything: only traffic to and from the uplink is forwarded.
    b.add_chain(
        f,
        TABLE,
        &BaseChain {
            name: "forward",
            hook: Hook::Forward,
            priority: 0,
            kind: "filter",
            accept_by_default: false,
        },
    );
    // The kernel passes bridged IPv4 through the forward hook too
    // (br_netfilter, bridge-nf-call-iptables defaults to 1 in each netns),
    // with the bridge as both devices: traffic within a network stays allowed.
    for net in networks {
        let mut rule = expr::iifname(&net.bridge, true);
        rule.extend(expr::oifname(&net.bridge, true));
        b.add_rule(f, TABLE, "forward", &accept(rule));
    }
    let external = || networks.iter().filter(|n| !n.internal);
    match mode.link() {
        Some(uplink) => {
            b.add_rule(f, TABLE, "forward", &accept(expr::iifname(uplink, true)));
            for net in external() {
                let mut rule = expr::iifname(&net.bridge, true);
                rule.extend(expr::oifname(uplink, true));
                b.add_rule(f, TABLE, "forward", &accept(rule));
            }
            b.add_chain(
                f,
                TABLE,
                &BaseChain {
                    name: "postrouting",
                    hook: Hook::Postrouting,
                    priority: 100,
                    kind: "nat",
                    accept_by_default: true,
                },
            );
            let mut masq = expr::oifname(uplink, true);
            masq.push(Expr::Masquerade);
            b.add_rule(f, TABLE, "postrouting", &masq);
        }
        None => {
            // TCP and UDP: DNAT to the relay's sockets at the gateway,
            // which br_netfilter (built in, on in every netns) handles in
            // bridge context; the relay reads the original destination
            // back from conntrack. TPROXY would be undone there: ip_rcv
            // orphans the socket TPROXY assigned in the bridge's pass
            // through the IP prerouting hook.
            b.add_chain(
                f,
                TABLE,
                &BaseChain {
                    name: "relay_nat",
                    hook: Hook::Prerouting,
                    priority: -100,
                    kind: "nat",
                    accept_by_default: true,
                },
            );
            for net in external() {
                let off_net = || {
                    let mut rule = expr::saddr_in(net.subnet.addr, net.subnet.prefix, true);
                    rule.extend(expr::daddr_in(net.subnet.addr, net.subnet.prefix, false));
                    rule
                };
                let mut tcp = off_net();
                tcp.extend(expr::l4proto(TCP));
                tcp.extend(expr::dnat_to(net.gateway, relay::PORT));
                b.add_rule(f, TABLE, "relay_nat", &tcp);
                // A port range, so that flows from one client port to
                // several destinations get distinct reply tuples.
                let mut udp = off_net();
                udp.extend(expr::l4proto(UDP));
                udp.extend(expr::dnat_range(
                    net.gateway,
                    relay::PORT,
                    relay::PORT + relay::UDP_PORTS - 1,
                ));
                b.add_rule(f, TABLE, "relay_nat", &udp);
            }
        }
    }
    b
}

fn accept(mut rule: Vec<Expr>) -> Vec<Expr> {
    rule.push(Expr::Verdict { accept: true });
    rule
}

/// Removes the table (at shutdown). Runs in the bridge netns.
pub fn clear() -> io::Result<()> {
    let mut b = Batch::new();
    b.add_table(nft::FAMILY_IP, TABLE)
        .delete_table(nft::FAMILY_IP, TABLE);
    b.commit()
}
