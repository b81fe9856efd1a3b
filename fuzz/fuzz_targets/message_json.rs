//! A message payload as JSON (`{"type": ..., "data": ...}`), in either form
//! (Reflow 1.0's wrappers or inline) and with Reflow 1.0's own kinds. A
//! payload that parses must serialise in the 1.0 form and parse again to the
//! same message, unless it has no 1.0 form, and then `check_v10` says so.
#![no_main]

use libfuzzer_sys::fuzz_target;
use reflow_distributed::Message;

fuzz_target!(|data: &[u8]| {
    let Ok(message) = serde_json::from_slice::<Message>(data) else {
        return;
    };
    let _ = format!("{message:?}");
    let _ = message.to_value();
    let Ok(text) = serde_json::to_string(&message) else {
        assert!(message.check_v10().is_err(), "{message:?} should serialise");
        return;
    };
    assert_eq!(message.check_v10(), Ok(()));
    let again: Message = serde_json::from_str(&text).expect("a serialised message parses");
    assert_eq!(again, message, "{text}");
});
