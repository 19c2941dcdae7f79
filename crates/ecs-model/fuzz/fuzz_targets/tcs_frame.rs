//! Fuzzes what a TCS server reads from an agent: the signed header block, then the frame. Nothing
//! panics, a split frame joins back to the same parts, and a decoded frame survives a round trip.
#![no_main]

use ecs_model::envelope::{join_signed_frame, split_signed_frame};
use ecs_model::tcs::TcsMessage;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok((headers, json)) = split_signed_frame(data) else {
        return;
    };
    let text = String::from_utf8_lossy(json);
    let joined = join_signed_frame(&headers, &text);
    match split_signed_frame(joined.as_bytes()) {
        Ok((headers_again, json_again)) => {
            assert_eq!(headers_again, headers);
            assert_eq!(json_again, text.as_bytes());
        }
        Err(e) => panic!("a joined frame does not split: {e}"),
    }
    if let Ok(message) = TcsMessage::decode(&text) {
        let again = TcsMessage::decode(&message.encode());
        assert_eq!(again.ok().as_ref(), Some(&message));
    }
});
