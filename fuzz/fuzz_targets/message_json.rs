//! A message payload as JSON (`{"type": ..., "data": ...}`), including the
//! older wrapper form. A payload that parses must serialise and parse again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use reflow_distributed::Message;

fuzz_target!(|data: &[u8]| {
    let Ok(message) = serde_json::from_slice::<Message>(data) else {
        return;
    };
    let text = serde_json::to_string(&message).expect("a parsed message serialises");
    let again: Message = serde_json::from_str(&text).expect("a serialised message parses");
    assert_eq!(again.type_name(), message.type_name());
    let _ = format!("{message:?}");
    let _ = message.to_value();
});
