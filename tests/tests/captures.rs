//! Recorded IM sessions replayed through the real proxy in the namespace rig:
//! every byte arrives unchanged, and every expected chat event is logged.

use std::net::SocketAddr;

use imspector_e2e::replay::Recording;
use imspector_e2e::{Imspector, Rig};

const PORT: u16 = 16667;

/// Where each protocol's recordings are played (the recorded port may differ).
fn port_of(protocol: &str) -> u16 {
    match protocol {
        "irc" => 6667,
        "msn" => 1863,
        "oscar" => 5190,
        "gadu-gadu" => 8074,
        "xmpp" => 5222,
        other => panic!("no port for {other}"),
    }
}

/// Replay every recording of `protocol`; return the proxy for log checks.
fn replay_all(rig: &Rig, protocol: &str) -> anyhow::Result<(Imspector, Vec<Recording>)> {
    replay_recordings(rig, protocol, Recording::all(protocol)?)
}

fn replay_recordings(
    rig: &Rig,
    protocol: &str,
    recordings: Vec<Recording>,
) -> anyhow::Result<(Imspector, Vec<Recording>)> {
    let port = port_of(protocol);
    rig.redirect(&[port], PORT)?;
    let config = "msn_protocol=on\nicq_protocol=on\nirc_protocol=on\ngg_protocol=on\n\
                  jabber_protocol=on\nlog_typing_events=on\n";
    let ims = Imspector::start(&rig.gateway, &rig.subdir("ims")?, config)?;
    for recording in &recordings {
        recording.replay(
            &rig.client,
            &rig.server,
            SocketAddr::from((rig.server_ip, port)),
        )?;
    }
    Ok((ims, recordings))
}

/// Each expected event with a known local id is in its conversation's log,
/// with its direction, type and text.
fn assert_logged(
    ims: &Imspector,
    log_name: &str,
    recordings: &[Recording],
) -> anyhow::Result<usize> {
    let mut checked = 0;
    for recording in recordings {
        for event in &recording.expected {
            let (Some(local), Some(remote)) =
                (event["local_id"].as_str(), event["remote_id"].as_str())
            else {
                continue;
            };
            let (local, remote) = (local.to_lowercase(), remote.to_lowercase());
            let outgoing = if event["direction"] == "outgoing" {
                "1"
            } else {
                "0"
            };
            let want = format!("{outgoing},{},0,", event["type"]);
            let text = event["text"]
                .as_str()
                .unwrap_or_default()
                .replace('\n', "\\n");
            let path = ims.log_file(log_name, &local, &remote);
            imspector_e2e::wait::until(
                &format!("{}: {text:?} in {}", recording.name, path.display()),
                || {
                    imspector_e2e::wait::read(&path)
                        .lines()
                        .any(|l| {
                            let rest = l.splitn(3, ',').nth(2).unwrap_or_default();
                            rest.starts_with(&want) && rest.contains(&text)
                        })
                        .then_some(())
                },
            )?;
            checked += 1;
        }
    }
    Ok(checked)
}

#[test]
fn irc_recordings_pass_unchanged_and_are_logged() -> anyhow::Result<()> {
    let rig = Rig::new()?;
    let (ims, recordings) = replay_all(&rig, "irc")?;
    let checked = assert_logged(&ims, "IRC", &recordings)?;
    assert!(checked >= 30, "only {checked} events checked");
    Ok(())
}

#[test]
fn msn_recordings_pass_unchanged_and_are_logged() -> anyhow::Result<()> {
    let rig = Rig::new()?;
    let (ims, recordings) = replay_all(&rig, "msn")?;
    let checked = assert_logged(&ims, "MSN", &recordings)?;
    assert_eq!(checked, 20);
    Ok(())
}

#[test]
fn gadu_gadu_recordings_pass_unchanged_and_are_logged() -> anyhow::Result<()> {
    let rig = Rig::new()?;
    let (ims, recordings) = replay_all(&rig, "gadu-gadu")?;
    let checked = assert_logged(&ims, "Gadu-Gadu", &recordings)?;
    assert_eq!(checked, 9);
    Ok(())
}

/// The OSCAR capture has gaps between FLAPs: both sides play it joined.
#[test]
fn oscar_recordings_pass_unchanged_and_are_logged() -> anyhow::Result<()> {
    let rig = Rig::new()?;
    let recordings = Recording::all_across_gaps("oscar")?;
    let (ims, recordings) = replay_recordings(&rig, "oscar", recordings)?;
    let checked = assert_logged(&ims, "ICQ-AIM", &recordings)?;
    assert_eq!(checked, 4);
    Ok(())
}

/// Some XMPP connections of the capture start mid-stream, and it has gaps
/// between stanzas: both sides play it joined. XMPP ids are logged as bare
/// JIDs (the expectations name the full one).
#[test]
fn xmpp_recordings_pass_unchanged_and_are_logged() -> anyhow::Result<()> {
    let rig = Rig::new()?;
    let mut recordings = Recording::all_across_gaps("xmpp")?;
    for event in recordings.iter_mut().flat_map(|r| r.expected.iter_mut()) {
        if let Some(bare) = event["local_id"].as_str().and_then(|l| l.split('/').next()) {
            event["local_id"] = bare.to_string().into();
        }
    }
    let (ims, recordings) = replay_recordings(&rig, "xmpp", recordings)?;
    let checked = assert_logged(&ims, "Jabber", &recordings)?;
    assert_eq!(checked, 3);
    Ok(())
}
