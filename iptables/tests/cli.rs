//! What a user sees at the command line: errors, defaults from imspector.conf,
//! the help, and the pf output (no pfctl here, so its exact text).

mod support;

use support::{generate, rules};

fn fails(args: &[&str]) -> String {
    let mut all = vec!["generate"];
    all.extend(args);
    let out = rules(&all);
    assert_eq!(out.status.code(), Some(2), "{args:?} must exit 2");
    assert!(out.stdout.is_empty());
    String::from_utf8(out.stderr).unwrap()
}

fn rule_lines(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .collect()
}

#[test]
fn bad_input_exits_2_with_a_clear_message() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["--protocols", "irc,aim"],
            "imspector-rules: error: --protocols: unknown protocol \"aim\"; known: irc, msn, icq, yahoo, gg, jabber, all\n",
        ),
        (
            &["--protocols", "irc", "--squid-user", "bad user"],
            "imspector-rules: error: --squid-user: \"bad user\" is not a user name or uid\n",
        ),
        (
            &["--protocols", "irc", "--in-interface", "eth0;reboot"],
            "imspector-rules: error: --in-interface: \"eth0;reboot\" is not an interface name\n",
        ),
        (
            &["--protocols", "irc", "--format", "restore"],
            "imspector-rules: error: --format restore writes one family: add --family ipv4 or --family ipv6\n",
        ),
        (
            &["--protocols", "irc", "--mode", "tproxy", "--squid-user", "proxy"],
            "imspector-rules: error: --squid-user needs --mode redirect: TPROXY cannot take connections that this host makes itself\n",
        ),
        (
            &["--protocols", "irc", "--squid-user", "proxy", "--daemon-user", "13"],
            "imspector-rules: error: Squid and imspector run as the same user (proxy): their connections cannot be told apart; run imspector as its own user, or set upstream_mark (--mark)\n",
        ),
        (
            &["--protocols", "irc", "--mode", "tproxy", "--mark", "1"],
            "imspector-rules: error: the upstream mark 1 equals the TPROXY mark: imspector's own connections would be routed back to it\n",
        ),
        (
            &["--protocols", "irc", "--port", "6667"],
            "imspector-rules: error: port 6667 is imspector's own port and also an IM port: connections would loop\n",
        ),
        (
            &["--protocols", "irc", "--format", "pf", "--squid-user", "proxy"],
            "imspector-rules: error: --format pf cannot redirect Squid's own connections (rdr sees incoming traffic only): use imspector's http_port with Squid's cache_peer instead\n",
        ),
    ];
    for (args, message) in cases {
        assert_eq!(fails(args), *message, "{args:?}");
    }
    for args in [
        &["--protocols", "irc", "--mark", "0"][..],
        &["--protocols", "irc", "--route-table", "254"],
        &["--protocols", "irc", "--format", "xml"],
        &["--protocols", "irc", "-c", "/etc/imspector/imspector.conf"],
    ] {
        assert!(fails(args).starts_with("error: "), "{args:?}");
    }
}

#[test]
fn config_errors_name_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("imspector.conf");
    std::fs::write(&conf, "irc_protocol=on\nirc_ports=6667,x\n").unwrap();
    let path = conf.to_str().unwrap();
    assert_eq!(
        fails(&["-c", path]),
        format!("imspector-rules: error: {path}:2: irc_ports: \"x\" is not a port number\n")
    );
    std::fs::write(&conf, "irc_protocol=on\n\nupstream_mark=0\n").unwrap();
    assert_eq!(
        fails(&["-c", path]),
        format!("imspector-rules: error: {path}:3: upstream_mark: 0 matches every unmarked packet; use a mark from 1\n")
    );
    std::fs::write(&conf, "user=no such\nirc_protocol=on\n").unwrap();
    assert_eq!(
        fails(&["-c", path]),
        format!("imspector-rules: error: {path}:1: user: not a user name or uid\n")
    );
    let missing = dir.path().join("missing.conf");
    let missing = missing.to_str().unwrap();
    assert!(fails(&["-c", missing])
        .starts_with(&format!("imspector-rules: error: {missing}: cannot read: ")));
}

#[test]
fn the_config_gives_port_protocols_user_and_mark() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("imspector.conf");
    std::fs::write(
        &conf,
        "port=16668\nuser=nobody\nupstream_mark=77\nirc_protocol=on\nirc_ports=6667,6697\ngg_protocol=on\nmsn_protocol=off\n",
    )
    .unwrap();
    let path = conf.to_str().unwrap();
    let out = generate(&["-c", path, "--squid-user", "proxy", "--family", "ipv4"]);
    assert_eq!(
        rule_lines(&out),
        [
            "set -e",
            "iptables -t nat -N IMSPECTOR 2>/dev/null || iptables -t nat -F IMSPECTOR",
            "iptables -t nat -A IMSPECTOR -p tcp -m multiport --dports 6667,6697,8074 -j REDIRECT --to-ports 16668",
            "iptables -t nat -C PREROUTING -j IMSPECTOR 2>/dev/null || iptables -t nat -A PREROUTING -j IMSPECTOR",
            "iptables -t nat -N IMSPECTOR_OUTPUT 2>/dev/null || iptables -t nat -F IMSPECTOR_OUTPUT",
            "iptables -t nat -A IMSPECTOR_OUTPUT -m owner --uid-owner nobody -j RETURN",
            "iptables -t nat -A IMSPECTOR_OUTPUT -m mark --mark 77 -j RETURN",
            "iptables -t nat -A IMSPECTOR_OUTPUT -p tcp -m owner --uid-owner proxy -m multiport --dports 6667,6697,8074 -j REDIRECT --to-ports 16668",
            "iptables -t nat -C OUTPUT -j IMSPECTOR_OUTPUT 2>/dev/null || iptables -t nat -A OUTPUT -j IMSPECTOR_OUTPUT",
        ]
    );
    assert!(out.contains(&format!(
        "# Generated by `imspector-rules generate -c {path} --squid-user proxy --family ipv4`"
    )));
    assert!(out.contains(
        "# Redirects TCP to IRC 6667,6697, Gadu-Gadu 8074 to imspector on port 16668.\n"
    ));
    assert!(out.contains("# Connections made by imspector (user nobody) are never redirected.\n"));

    // Flags win over the config.
    let out = generate(&[
        "-c",
        path,
        "--squid-user",
        "proxy",
        "--family",
        "ipv4",
        "--port",
        "17000",
        "--daemon-user",
        "daemon",
        "--mark",
        "0x10",
    ]);
    assert!(out.contains("-m owner --uid-owner daemon -j RETURN\n"));
    assert!(out.contains("-m mark --mark 16 -j RETURN\n"));
    assert!(out.contains("-j REDIRECT --to-ports 17000\n"));
}

#[test]
fn pf_rdr_rules() {
    let out = generate(&[
        "--protocols",
        "irc,jabber",
        "--format",
        "pf",
        "--in-interface",
        "em1",
        "--skip-private",
    ]);
    assert_eq!(
        out,
        "# Generated by `imspector-rules generate --protocols irc,jabber --format pf --in-interface em1 --skip-private`; do not edit, generate again.
# Redirects TCP to IRC 6667, Jabber 5222,5223 to imspector on port 16667.
# Only connections arriving on em1.
# Private, loopback and link-local destinations are left alone.
# Add `rdr-anchor \"imspector\"` to pf.conf, then load with `pfctl -a imspector -f FILE`.
no rdr inet proto tcp from any to { 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, 127.0.0.0/8, 169.254.0.0/16 }
no rdr inet6 proto tcp from any to { fc00::/7, ::1/128, fe80::/10 }
rdr pass on em1 inet proto tcp from any to any port { 6667, 5222, 5223 } -> 127.0.0.1 port 16667
rdr pass on em1 inet6 proto tcp from any to any port { 6667, 5222, 5223 } -> ::1 port 16667
"
    );
    let out = generate(&["--protocols", "irc", "--format", "pf", "--family", "ipv4"]);
    assert_eq!(
        rule_lines(&out),
        ["rdr pass inet proto tcp from any to any port 6667 -> 127.0.0.1 port 16667"]
    );
    let out = generate(&["--protocols", "irc", "--format", "pf", "--remove"]);
    assert_eq!(rule_lines(&out), ["pfctl -a imspector -F nat"]);
    assert!(
        fails(&["--protocols", "irc", "--format", "pf", "--mode", "tproxy"])
            .contains("--format pf supports --mode redirect only")
    );
}

#[test]
fn nft_teardown_deletes_the_table() {
    let out = generate(&["--protocols", "irc", "--format", "nft", "--remove"]);
    assert_eq!(
        rule_lines(&out),
        ["table inet imspector", "delete table inet imspector"]
    );
}

#[test]
fn help_documents_every_flag() {
    let out = rules(&["generate", "--help"]);
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--config <FILE>",
        "--protocols <LIST>",
        "--port <N>",
        "--format <FORMAT>",
        "--family <FAMILY>",
        "--mode <MODE>",
        "--in-interface <IF>",
        "--skip-private",
        "--squid-user <NAME|UID>",
        "--daemon-user <NAME|UID>",
        "--mark <N>",
        "--tproxy-mark <N>",
        "--route-table <N>",
        "--remove",
    ] {
        let lines: Vec<&str> = help.lines().collect();
        let at = lines
            .iter()
            .position(|l| l.trim_start().starts_with(flag) || l.contains(&format!(", {flag}")))
            .unwrap_or_else(|| panic!("{flag} missing from --help:\n{help}"));
        // The description is on the next line.
        let description = lines[at + 1].trim();
        assert!(
            !description.is_empty() && !description.starts_with('-'),
            "{flag} has no description:\n{help}"
        );
    }
    for value in [
        "shell", "restore", "nft", "pf", "ipv4", "ipv6", "both", "redirect", "tproxy",
    ] {
        assert!(
            help.contains(&format!("- {value}:")),
            "{value} undocumented"
        );
    }
}
