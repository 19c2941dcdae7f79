//! Fuzzes the ACS frame decoder: any input decodes or fails without panicking, and whatever
//! decodes survives an encode/decode round trip unchanged.
#![no_main]

use ecs_model::acs::AcsMessage;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(message) = AcsMessage::decode(&text) {
        let again = AcsMessage::decode(&message.encode());
        assert_eq!(again.ok().as_ref(), Some(&message));
    }
    let _ = AcsMessage::decode_handshake_error(&text);
});
