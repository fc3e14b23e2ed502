//! Every validator of client input (paths, usernames, emails, passwords, texts, ids) on
//! arbitrary strings: an answer, never a panic, and what is accepted is accepted again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use schema::documents::check_path;
use schema::validation;

fuzz_target!(|input: &str| {
    if check_path("path", input).is_ok() {
        assert!(!input.is_empty() && !input.starts_with('/'));
    }
    if let Ok(name) = validation::username("username", input) {
        assert!(validation::username("username", &name).is_ok());
    }
    if let Ok(email) = validation::email("email", input) {
        assert!(validation::email("email", &email).is_ok());
    }
    let _ = validation::password("password", input);
    if let Ok(line) = validation::single_line("title", input, 200) {
        assert!(validation::single_line("title", &line, 200).is_ok());
    }
    let _ = validation::text("text", input, 4000);
    let _ = validation::id("id", input);
});
