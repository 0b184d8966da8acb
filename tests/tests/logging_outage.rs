//! The worst day of a logging database, end to end: PostgreSQL stops in the
//! middle of real chat traffic, chatting goes on, imspector is restarted while
//! the database is still down, then the database comes back. Every event must
//! be in the table exactly once, in order.

use std::net::IpAddr;

use imspector_e2e::databases::Postgres;
use imspector_e2e::irc::{Ii, Ngircd};
use imspector_e2e::{wait, Imspector, Rig};
use nix::sys::signal::Signal;

/// The texts logged so far, in table order.
fn logged(db: &Postgres) -> Vec<String> {
    db.sql("SELECT eventdata FROM messages ORDER BY id")
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn no_event_lost_or_repeated_across_an_outage_and_a_restart() -> anyhow::Result<()> {
    let mut db = Postgres::start();
    let rig = Rig::new()?;
    rig.redirect(&[6667], 16667)?;
    let _server = Ngircd::start(&rig.server, &rig.subdir("ngircd")?)?;
    let clients = rig.subdir("clients")?;
    let bob = Ii::remote(&rig, &clients, "bob")?;
    let spool = rig.subdir("spool")?;
    let config = format!(
        "irc_protocol=on\npgsql_connect={}\nspool_dir={}\n",
        db.connect_string(),
        spool.display()
    );
    let server = IpAddr::V4(rig.server_ip);
    let mut sent = Vec::new();
    let mut chat = |alice: &Ii, range: std::ops::Range<usize>| -> anyhow::Result<()> {
        for n in range {
            let text = format!("message {n}");
            alice.msg("bob", &text)?;
            bob.wait_received("alice", "alice", &text)?;
            sent.push(text);
        }
        Ok(())
    };

    let mut ims = Imspector::start(&rig.gateway, &rig.subdir("ims1")?, &config)?;
    let alice = Ii::local(&rig, &clients, server, "alice")?;
    chat(&alice, 0..5)?;
    wait::until("the first events in the table", || {
        (logged(&db).len() == 5).then_some(())
    })?;
    db.stop();
    chat(&alice, 5..10)?;
    ims.wait_output("postgres sink is down")?;

    // Restart while the database is down; the client reconnects.
    ims.process.signal(Signal::SIGTERM)?;
    assert_eq!(ims.process.wait_exit()?, Some(0));
    drop(alice);
    let ims = Imspector::start(&rig.gateway, &rig.subdir("ims2")?, &config)?;
    let alice = Ii::start(&rig.client, &rig.subdir("clients2")?, server, "alice", None)?;
    chat(&alice, 10..15)?;

    db.resume();
    wait::until("every event in the table", || {
        (logged(&db).len() >= 15).then_some(())
    })
    .map_err(|e| anyhow::anyhow!("{e}; table has {:?}", logged(&db)))?;
    ims.wait_output("postgres sink is back")?;
    assert_eq!(logged(&db), sent);
    Ok(())
}
