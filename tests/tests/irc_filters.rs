//! The filter scenarios every protocol must pass, run through real IRC
//! software: ii as the local and the remote user, ngircd, iptables REDIRECT,
//! and the imspector binary reloaded with SIGHUP between scenarios.

use std::net::IpAddr;

use imspector::filter::testing::{self, FilterRig, Outcome};
use imspector_e2e::irc::{Ii, Ngircd};
use imspector_e2e::{wait, Imspector, Rig};

struct IrcFilterRig {
    alice: Ii,
    bob: Ii,
    ims: Imspector,
    base_config: String,
    /// Messages sent so far, so each `send` finds its own log line.
    sent: usize,
    /// Lines of bob's window with alice already looked at.
    seen: usize,
    /// Notices alice already got.
    notices_seen: usize,
    _server: Ngircd,
    rig: Rig,
}

const SYNC: &str = "#sync";

impl IrcFilterRig {
    fn new() -> anyhow::Result<Self> {
        let rig = Rig::new()?;
        rig.redirect(&[6667], 16667)?;
        let base_config = "irc_protocol=on\n".to_string();
        let ims = Imspector::start(&rig.gateway, &rig.subdir("ims")?, &base_config)?;
        let server = Ngircd::start(&rig.server, &rig.subdir("ngircd")?)?;
        let dir = rig.subdir("clients")?;
        let bob = Ii::remote(&rig, &dir, "bob")?;
        let alice = Ii::local(&rig, &dir, IpAddr::V4(rig.server_ip), "alice")?;
        bob.join(SYNC)?;
        alice.join(SYNC)?;
        Ok(IrcFilterRig {
            alice,
            bob,
            ims,
            base_config,
            sent: 0,
            seen: 0,
            notices_seen: 0,
            _server: server,
            rig,
        })
    }

    /// Joins of alice that bob has seen in the sync channel.
    fn joins_seen(&self) -> usize {
        self.bob
            .window(SYNC)
            .lines()
            .filter(|l| l.contains("alice(") && l.contains("has joined"))
            .count()
    }

    /// Lines alice sent that bob's query window shows.
    fn bob_got(&self) -> Vec<String> {
        self.bob
            .window("alice")
            .lines()
            .filter_map(|l| l.split_once("<alice> ").map(|(_, t)| t.to_string()))
            .collect()
    }

    /// Notices alice's client shows in its window with bob (ii writes them as
    /// `-!- "text")`).
    fn alice_notices(&self) -> Vec<String> {
        self.alice
            .window("bob")
            .lines()
            .filter_map(|l| l.split_once(" -!- \"")?.1.strip_suffix("\")"))
            .map(str::to_string)
            .collect()
    }
}

impl FilterRig for IrcFilterRig {
    fn ids(&self) -> (String, String) {
        ("alice".into(), "bob".into())
    }

    fn configure(&mut self, conf: &str) -> Result<(), String> {
        self.ims
            .reload(&format!("{}{conf}", self.base_config))
            .map_err(|e| e.to_string())
    }

    fn send(&mut self, text: &str) -> Result<Outcome, String> {
        let e = |e: anyhow::Error| e.to_string();
        let joins = self.joins_seen();
        self.alice.msg("bob", text).map_err(e)?;
        // Rejoining the sync channel is no chat event: no filter touches it, and
        // it reaches bob after the message, if the message went through at all.
        self.alice.command(&format!("/PART {SYNC}")).map_err(e)?;
        self.alice.command(&format!("/JOIN {SYNC}")).map_err(e)?;
        wait::until("alice's rejoin", || {
            (self.joins_seen() > joins).then_some(())
        })
        .map_err(e)?;
        self.sent += 1;
        let logged = self
            .ims
            .wait_logged("IRC", "alice", "bob", self.sent)
            .map_err(e)?;
        let got = self.bob_got();
        let delivered = got.get(self.seen..).unwrap_or_default().to_vec();
        self.seen = got.len();
        if delivered.len() > 1 {
            return Err(format!("bob got several lines: {delivered:?}"));
        }
        let notices = self.alice_notices();
        let new_notices = notices[self.notices_seen..].to_vec();
        self.notices_seen = notices.len();
        Ok(Outcome {
            delivered: delivered.into_iter().next(),
            notices: new_notices,
            logged,
        })
    }
}

#[test]
fn filter_scenarios_through_real_irc_software() -> anyhow::Result<()> {
    let mut rig = IrcFilterRig::new()?;
    let dir = rig.rig.subdir("scenarios")?;
    testing::run_all(&mut rig, &dir);
    Ok(())
}
