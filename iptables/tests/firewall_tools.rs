//! The generated rules, checked and applied with the real iptables, ip6tables,
//! nft and ip inside network namespaces that each test creates (root only).

mod support;

use support::{crate_dir, generate, Netns};

/// Every option of the redirect mode at once.
const FULL: &[&str] = &[
    "--protocols",
    "irc,msn",
    "--port",
    "16668",
    "--in-interface",
    "veth0",
    "--skip-private",
    "--squid-user",
    "proxy",
    "--daemon-user",
    "nobody",
    "--mark",
    "77",
];

const TPROXY: &[&str] = &[
    "--protocols",
    "all",
    "--mode",
    "tproxy",
    "--in-interface",
    "veth0",
    "--skip-private",
    "--mark",
    "77",
];

const VARIANTS: &[&[&str]] = &[&["--protocols", "all"], FULL, TPROXY];

fn with<'a>(base: &[&'a str], more: &[&'a str]) -> Vec<&'a str> {
    base.iter().chain(more).copied().collect()
}

/// What iptables-save shows for FULL, IPv4 (uids and marks as numbers).
const FULL_V4_SAVED: &[&str] = &[
    ":IMSPECTOR - [0:0]",
    ":IMSPECTOR_OUTPUT - [0:0]",
    "-A PREROUTING -j IMSPECTOR",
    "-A OUTPUT -j IMSPECTOR_OUTPUT",
    "-A IMSPECTOR -d 10.0.0.0/8 -j RETURN",
    "-A IMSPECTOR -d 172.16.0.0/12 -j RETURN",
    "-A IMSPECTOR -d 192.168.0.0/16 -j RETURN",
    "-A IMSPECTOR -d 127.0.0.0/8 -j RETURN",
    "-A IMSPECTOR -d 169.254.0.0/16 -j RETURN",
    "-A IMSPECTOR -i veth0 -p tcp -m multiport --dports 1863,6667 -j REDIRECT --to-ports 16668",
    "-A IMSPECTOR_OUTPUT -m owner --uid-owner 65534 -j RETURN",
    "-A IMSPECTOR_OUTPUT -m mark --mark 0x4d -j RETURN",
    "-A IMSPECTOR_OUTPUT -d 10.0.0.0/8 -j RETURN",
    "-A IMSPECTOR_OUTPUT -d 172.16.0.0/12 -j RETURN",
    "-A IMSPECTOR_OUTPUT -d 192.168.0.0/16 -j RETURN",
    "-A IMSPECTOR_OUTPUT -d 127.0.0.0/8 -j RETURN",
    "-A IMSPECTOR_OUTPUT -d 169.254.0.0/16 -j RETURN",
    "-A IMSPECTOR_OUTPUT -p tcp -m owner --uid-owner 13 -m multiport --dports 1863,6667 -j REDIRECT --to-ports 16668",
];

/// What ip6tables-save shows for FULL.
const FULL_V6_SAVED: &[&str] = &[
    ":IMSPECTOR - [0:0]",
    ":IMSPECTOR_OUTPUT - [0:0]",
    "-A PREROUTING -j IMSPECTOR",
    "-A OUTPUT -j IMSPECTOR_OUTPUT",
    "-A IMSPECTOR -d fc00::/7 -j RETURN",
    "-A IMSPECTOR -d ::1/128 -j RETURN",
    "-A IMSPECTOR -d fe80::/10 -j RETURN",
    "-A IMSPECTOR -i veth0 -p tcp -m multiport --dports 1863,6667 -j REDIRECT --to-ports 16668",
    "-A IMSPECTOR_OUTPUT -m owner --uid-owner 65534 -j RETURN",
    "-A IMSPECTOR_OUTPUT -m mark --mark 0x4d -j RETURN",
    "-A IMSPECTOR_OUTPUT -d fc00::/7 -j RETURN",
    "-A IMSPECTOR_OUTPUT -d ::1/128 -j RETURN",
    "-A IMSPECTOR_OUTPUT -d fe80::/10 -j RETURN",
    "-A IMSPECTOR_OUTPUT -p tcp -m owner --uid-owner 13 -m multiport --dports 1863,6667 -j REDIRECT --to-ports 16668",
];

#[test]
fn restore_input_passes_the_check_loads_and_unloads() {
    let ns = Netns::new();
    let broken = "*nat\n-A PREROUTING -p tcp --dport 6667 -j REDIRECT --to-ports\nCOMMIT\n";
    assert!(
        !ns.run("iptables-restore", &["--test"], broken)
            .status
            .success(),
        "iptables-restore --test must refuse a broken rule"
    );
    for variant in VARIANTS {
        for (family, restore, save) in [
            ("ipv4", "iptables-restore", "iptables-save"),
            ("ipv6", "ip6tables-restore", "ip6tables-save"),
        ] {
            let args = with(variant, &["--format", "restore", "--family", family]);
            let input = generate(&args);
            ns.ok(restore, &["--test"], &input);
            ns.ok(restore, &["--noflush"], &input);
            let loaded = ns.rules(save);
            if *variant == FULL {
                let expected = if family == "ipv4" {
                    FULL_V4_SAVED
                } else {
                    FULL_V6_SAVED
                };
                assert_eq!(loaded, expected);
            }
            assert!(loaded.contains(&"-A PREROUTING -j IMSPECTOR".to_string()));
            ns.ok(
                restore,
                &["--noflush"],
                &generate(&with(&args, &["--remove"])),
            );
            assert_eq!(ns.rules(save), Vec::<String>::new(), "{args:?}");
        }
    }
}

#[test]
fn shell_script_applied_twice_keeps_one_copy_and_remove_leaves_nothing() {
    let ns = Netns::new();
    let script = generate(FULL);
    ns.sh(&script);
    assert_eq!(ns.rules("iptables-save"), FULL_V4_SAVED);
    assert_eq!(ns.rules("ip6tables-save"), FULL_V6_SAVED);
    ns.sh(&script);
    assert_eq!(ns.rules("iptables-save"), FULL_V4_SAVED);
    assert_eq!(ns.rules("ip6tables-save"), FULL_V6_SAVED);

    let teardown = generate(&with(FULL, &["--remove"]));
    ns.sh(&teardown);
    assert_eq!(ns.rules("iptables-save"), Vec::<String>::new());
    assert_eq!(ns.rules("ip6tables-save"), Vec::<String>::new());
    // Harmless when there is nothing to remove.
    ns.sh(&teardown);
}

#[test]
fn tproxy_script_sets_policy_routing_once_and_removes_it() {
    let ns = Netns::new();
    let script = generate(TPROXY);
    ns.sh(&script);
    ns.sh(&script);
    let mangle = |save: &str| {
        ns.ok(save, &["-t", "mangle"], "")
            .lines()
            .filter(|l| l.starts_with("-A"))
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        mangle("iptables-save"),
        [
            "-A PREROUTING -j IMSPECTOR",
            "-A IMSPECTOR -d 10.0.0.0/8 -j RETURN",
            "-A IMSPECTOR -d 172.16.0.0/12 -j RETURN",
            "-A IMSPECTOR -d 192.168.0.0/16 -j RETURN",
            "-A IMSPECTOR -d 127.0.0.0/8 -j RETURN",
            "-A IMSPECTOR -d 169.254.0.0/16 -j RETURN",
            "-A IMSPECTOR -i veth0 -p tcp -m multiport --dports 1863,5190,5050,6667,8074,5222,5223 -j TPROXY --on-port 16667 --on-ip 0.0.0.0 --tproxy-mark 0x1/0xffffffff",
        ]
    );
    assert_eq!(mangle("ip6tables-save").len(), 5);
    for ip in [&["-4"][..], &["-6"][..]] {
        let rules = ns.ok("ip", &with(ip, &["rule", "show"]), "");
        let marked: Vec<_> = rules.lines().filter(|l| l.contains("fwmark")).collect();
        assert_eq!(marked.len(), 1, "{rules}");
        assert!(
            marked[0].ends_with("from all fwmark 0x1 lookup 100"),
            "{rules}"
        );
        let routes = ns.ok("ip", &with(ip, &["route", "show", "table", "100"]), "");
        assert!(
            routes.starts_with("local default dev lo "),
            "{ip:?}: {routes}"
        );
        assert_eq!(routes.lines().count(), 1, "{ip:?}: {routes}");
    }

    let teardown = generate(&with(TPROXY, &["--remove"]));
    ns.sh(&teardown);
    ns.sh(&teardown);
    assert_eq!(mangle("iptables-save"), Vec::<String>::new());
    assert_eq!(mangle("ip6tables-save"), Vec::<String>::new());
    for ip in [&["-4"][..], &["-6"][..]] {
        let rules = ns.ok("ip", &with(ip, &["rule", "show"]), "");
        assert!(!rules.contains("fwmark"), "{rules}");
        let routes = ns.ok("ip", &with(ip, &["route", "show", "table", "100"]), "");
        assert_eq!(routes.trim(), "");
    }
}

#[test]
fn nft_script_passes_the_check_and_replaces_itself() {
    let ns = Netns::new();
    for variant in VARIANTS {
        for family in ["both", "ipv4", "ipv6"] {
            let args = with(variant, &["--format", "nft", "--family", family]);
            ns.ok("nft", &["-c", "-f", "/dev/stdin"], &generate(&args));
        }
    }
    let script = generate(&with(FULL, &["--format", "nft"]));
    ns.ok("nft", &["-f", "/dev/stdin"], &script);
    let once = ns.ok("nft", &["list", "ruleset"], "");
    ns.ok("nft", &["-f", "/dev/stdin"], &script);
    assert_eq!(ns.ok("nft", &["list", "ruleset"], ""), once);
    assert_eq!(
        once,
        "table inet imspector {
\tchain prerouting {
\t\ttype nat hook prerouting priority dstnat; policy accept;
\t\tip daddr { 10.0.0.0/8, 127.0.0.0/8, 169.254.0.0/16, 172.16.0.0/12, 192.168.0.0/16 } return
\t\tip6 daddr { ::1, fc00::/7, fe80::/10 } return
\t\tiifname \"veth0\" tcp dport { 1863, 6667 } redirect to :16668
\t}

\tchain output {
\t\ttype nat hook output priority -100; policy accept;
\t\tmeta skuid 65534 return
\t\tmeta mark 0x0000004d return
\t\tip daddr { 10.0.0.0/8, 127.0.0.0/8, 169.254.0.0/16, 172.16.0.0/12, 192.168.0.0/16 } return
\t\tip6 daddr { ::1, fc00::/7, fe80::/10 } return
\t\tmeta skuid 13 tcp dport { 1863, 6667 } redirect to :16668
\t}
}
"
    );
    let teardown = generate(&with(FULL, &["--format", "nft", "--remove"]));
    ns.ok("nft", &["-f", "/dev/stdin"], &teardown);
    assert_eq!(ns.ok("nft", &["list", "ruleset"], ""), "");
    ns.ok("nft", &["-f", "/dev/stdin"], &teardown);
}

#[test]
fn every_snippet_is_accepted_by_the_real_tools() {
    let dir = crate_dir().join("snippets");
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap();
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        let ns = Netns::new();
        if name.ends_with(".nft") {
            ns.ok("nft", &["-c", "-f", "/dev/stdin"], &read(&name));
        } else if name.ends_with(".v4.rules") {
            ns.ok("iptables-restore", &["--test"], &read(&name));
        } else if name.ends_with(".v6.rules") {
            ns.ok("ip6tables-restore", &["--test"], &read(&name));
        } else if let Some(stem) = name.strip_suffix(".sh") {
            if stem.ends_with("-remove") {
                continue; // run after the script it undoes
            }
            let teardown = match stem {
                "squid-owner" | "tproxy" => format!("{stem}-remove.sh"),
                _ => "all-protocols-remove.sh".to_string(),
            };
            ns.sh(&read(&name));
            assert!(!ns.rules("iptables-save").is_empty(), "{name}");
            ns.sh(&read(&teardown));
            assert_eq!(ns.rules("iptables-save"), Vec::<String>::new(), "{name}");
            assert_eq!(ns.rules("ip6tables-save"), Vec::<String>::new(), "{name}");
        } else {
            assert_eq!(name, "pf.conf", "a snippet this test does not know");
            continue; // no pfctl here: tests/cli.rs compares the text
        }
        checked += 1;
    }
    assert_eq!(checked, 14);
}
