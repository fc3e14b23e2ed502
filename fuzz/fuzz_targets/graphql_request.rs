//! A GraphQL request as a client sends it (the JSON body of a POST), through the same limits,
//! parser and validation as the server's; nothing may panic or overflow the stack.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

/// The server runs requests on Tokio (the query timeout needs its timer): so does this.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a Tokio runtime")
    })
}

fn schema() -> &'static schema::AppSchema {
    static SCHEMA: OnceLock<schema::AppSchema> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        schema::validator(&schema::SchemaOptions {
            introspection: true,
            max_variables_bytes: 1 << 20,
            query_timeout: std::time::Duration::from_secs(10),
            budgets: None,
        })
    })
}

fuzz_target!(|data: &[u8]| {
    // Either a JSON body or, when it is not one, the bytes as the query text itself.
    let request = match serde_json::from_slice::<async_graphql::Request>(data) {
        Ok(request) => request,
        Err(_) => async_graphql::Request::new(String::from_utf8_lossy(data)),
    };
    let response = runtime().block_on(schema().execute(request));
    // Every refusal says why.
    for error in &response.errors {
        assert!(!error.message.is_empty());
    }
});
