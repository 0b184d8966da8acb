//! `block_files=on` and `block_webcams=on`: block every event of that type;
//! `block_encrypted=on`: block every end-to-end encrypted message.

use imspector_protocols::EventType;

use super::{Filter, FilterEvent};
use crate::config::{ConfigError, Settings};

pub struct BlockTypes {
    blocked: Vec<EventType>,
    encrypted: bool,
}

impl BlockTypes {
    pub fn from_settings(settings: &Settings) -> Result<Option<Self>, ConfigError> {
        let mut blocked = Vec::new();
        if settings.flag("block_files")?.unwrap_or(false) {
            blocked.push(EventType::File);
        }
        if settings.flag("block_webcams")?.unwrap_or(false) {
            blocked.push(EventType::Webcam);
        }
        let encrypted = settings.flag("block_encrypted")?.unwrap_or(false);
        Ok((!blocked.is_empty() || encrypted).then_some(BlockTypes { blocked, encrypted }))
    }
}

impl Filter for BlockTypes {
    fn apply(&self, event: &mut FilterEvent) {
        if self.blocked.contains(&event.kind) || (self.encrypted && event.encrypted) {
            event.blocked = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::testing::event;

    fn filter(conf: &str) -> Option<BlockTypes> {
        BlockTypes::from_settings(&Settings::parse("t.conf", conf).unwrap()).unwrap()
    }

    #[test]
    fn blocks_only_the_types_switched_on() {
        assert!(filter("block_files=off\n").is_none());
        let files = filter("block_files=on\n").unwrap();
        for (kind, blocked) in [
            (EventType::File, true),
            (EventType::Webcam, false),
            (EventType::Message, false),
        ] {
            let mut e = event("hi");
            e.kind = kind;
            files.apply(&mut e);
            assert_eq!(e.blocked, blocked, "{kind:?}");
        }
        let webcams = filter("block_webcams=yes\n").unwrap();
        let mut e = event("");
        e.kind = EventType::Webcam;
        webcams.apply(&mut e);
        assert!(e.blocked);
    }

    #[test]
    fn block_encrypted_blocks_only_encrypted_messages() {
        let encrypted_only = filter("block_encrypted=on\n").unwrap();
        for encrypted in [true, false] {
            let mut e = event("[OMEMO encrypted message]");
            e.encrypted = encrypted;
            encrypted_only.apply(&mut e);
            assert_eq!(e.blocked, encrypted);
        }
        let mut e = event("x");
        e.encrypted = true;
        filter("block_files=on\n").unwrap().apply(&mut e);
        assert!(!e.blocked);
    }

    #[test]
    fn a_bad_flag_names_file_and_line() {
        let settings = Settings::parse("t.conf", "\nblock_files=sometimes\n").unwrap();
        let e = BlockTypes::from_settings(&settings).err().unwrap();
        assert_eq!(
            e.to_string(),
            "t.conf:2: block_files: \"sometimes\" is not on or off"
        );
    }
}
