//! `scripts/demo`, run as a new user would: it shows the chat and the log
//! lines the daemon writes, and leaves no namespace behind.

use std::process::Command;

fn namespaces() -> String {
    imspector_e2e::netns::run("ip", &["netns", "list"]).unwrap_or_default()
}

#[test]
fn the_demo_shows_chat_being_logged_and_cleans_up() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let words = dir.path().join("badwords.txt");
    std::fs::write(&words, "# words to filter\nfrobnicate\n")?;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/demo");
    let out = Command::new(script)
        .arg("--badwords")
        .arg(&words)
        .env("IMSPECTOR_DEMO_NO_BUILD", "1")
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let logged: Vec<&str> = stdout
        .lines()
        .filter(|l| l.contains("logged in IRC/alice/bob/"))
        .collect();
    // client,time,outgoing,type,filtered,categories,text
    let texts: Vec<&str> = logged
        .iter()
        .map(|l| l.split_once(": ").map_or("", |(_, line)| line))
        .map(|l| l.splitn(7, ',').nth(6).unwrap_or_default())
        .collect();
    assert_eq!(
        texts,
        [
            "hello bob, this goes through the gateway",
            "hi alice, and it is logged",
            "this one says frobnicate",
            "bye!"
        ],
        "{stdout}"
    );
    // The log keeps the original text with the bad-word count, as the
    // original did; bob's client shows the replaced text.
    assert!(logged[2].contains(",1,1,0,1 badwords;,"), "{}", logged[2]);
    assert!(
        stdout.contains("  bob sees: this one says **********\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("  alice sees: hi alice, and it is logged\n"),
        "{stdout}"
    );
    let name = stdout.split_whitespace().nth(2).unwrap_or_default();
    assert!(
        !name.is_empty() && !namespaces().contains(name),
        "{name} left behind"
    );
    Ok(())
}
