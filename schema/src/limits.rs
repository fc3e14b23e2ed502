//! How much work one GraphQL document may ask for, checked before it is parsed, validated or
//! executed.
//!
//! async-graphql's own limits come too late or count too little: its parser (pest) recurses
//! once per nested value, so `[[[[…]]]]` 1,500 deep overflows a worker's stack before any
//! limit applies, and its depth and complexity rules do not count fragments as expanded, so a
//! chain of fragments each spreading the previous one twice costs 2^n in validation. Here:
//!
//! 1. [`scan`] reads the text once without recursion: bracket nesting and token count;
//! 2. [`measure`] walks the parsed document with every fragment's cost computed once
//!    (fragments in dependency order, so spreads never recurse), giving the expanded field
//!    count and depth, with introspection measured by its own rule;
//! 3. [`check_variables`] walks the variables without recursion: nesting, count and size.
//!
//! Each refusal is a `BAD_USER_INPUT` error that says which limit was passed.

use std::collections::HashMap;

use async_graphql::parser::types::{ExecutableDocument, Selection, SelectionSet};
use async_graphql::{Name, ServerError, Variables};

use crate::error::codes;

/// Deepest nesting of `{`, `[` and `(` in a document's text.
pub const MAX_NESTING: usize = 32;
/// Most tokens (names, numbers, strings, punctuation) in one document.
pub const MAX_TOKENS: usize = 10_000;
/// Most aliased fields written in one document.
pub const MAX_ALIASES: usize = 100;
/// Most directives written in one document.
pub const MAX_DIRECTIVES: usize = 50;
/// Deepest selection an ordinary (non-introspection) query may nest, fragments expanded.
pub const MAX_DEPTH: usize = 12;
/// Most fields one operation may select, counted with every fragment expanded.
pub const MAX_FIELDS: u64 = 1_000;
/// Deepest selection below `__schema` / `__type`: the standard introspection query nests
/// `ofType` about ten levels, each costing one object.
pub const MAX_INTROSPECTION_DEPTH: usize = 24;
/// Most list-valued introspection fields nested in one another (`types { fields { args } }`
/// is three): each level multiplies the answer by the size of the schema.
pub const MAX_INTROSPECTION_LISTS: usize = 3;
/// Deepest nesting of lists and objects in the variables.
pub const MAX_VARIABLE_NESTING: usize = 16;
/// Most values (scalars, list items, object fields) in the variables.
pub const MAX_VARIABLE_VALUES: usize = 10_000;

/// The introspection fields that answer a list whose length is the size of the schema.
const INTROSPECTION_LISTS: &[&str] = &[
    "types",
    "fields",
    "args",
    "inputFields",
    "interfaces",
    "possibleTypes",
    "enumValues",
    "directives",
];

/// A refusal: BAD_USER_INPUT, with `extensions.limit` naming what was exceeded.
pub(crate) fn refuse(limit: &'static str, message: String) -> ServerError {
    let mut error = ServerError::new(message, None);
    let extensions = error.extensions.get_or_insert_with(Default::default);
    extensions.set("code", codes::BAD_USER_INPUT);
    extensions.set("limit", limit);
    error
}

/// Check the document's text before it is parsed: nesting of brackets and number of tokens,
/// in one pass with no recursion (strings and comments are skipped).
pub fn scan(query: &str) -> Result<(), ServerError> {
    let bytes = query.as_bytes();
    let (mut depth, mut tokens, mut i) = (0usize, 0usize, 0usize);
    let mut in_word = false;
    while i < bytes.len() {
        let byte = bytes[i];
        let word_byte =
            byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-' || byte >= 0x80;
        if word_byte {
            if !in_word {
                tokens += 1;
                in_word = true;
            }
            i += 1;
            continue;
        }
        in_word = false;
        match byte {
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' && bytes[i] != b'\r' {
                    i += 1;
                }
                continue;
            }
            b'"' => {
                tokens += 1;
                i = skip_string(bytes, i);
                continue;
            }
            b'{' | b'[' | b'(' => {
                tokens += 1;
                depth += 1;
                if depth > MAX_NESTING {
                    return Err(refuse(
                        "nesting",
                        format!(
                            "the document nests braces, brackets and parentheses more than {MAX_NESTING} deep"
                        ),
                    ));
                }
            }
            b'}' | b']' | b')' => {
                tokens += 1;
                depth = depth.saturating_sub(1);
            }
            b' ' | b'\t' | b'\n' | b'\r' | b',' => {}
            0xEF if bytes[i..].starts_with(&[0xEF, 0xBB, 0xBF]) => {}
            _ => tokens += 1,
        }
        if tokens > MAX_TOKENS {
            return Err(refuse(
                "tokens",
                format!("the document has more than {MAX_TOKENS} tokens"),
            ));
        }
        i += 1;
    }
    if tokens > MAX_TOKENS {
        return Err(refuse(
            "tokens",
            format!("the document has more than {MAX_TOKENS} tokens"),
        ));
    }
    Ok(())
}

/// The index just past the string starting at `start` (a `"…"` or a `"""…"""` block string).
fn skip_string(bytes: &[u8], start: usize) -> usize {
    if bytes[start..].starts_with(b"\"\"\"") {
        let mut i = start + 3;
        while i < bytes.len() {
            if bytes[i..].starts_with(b"\\\"\"\"") {
                i += 4;
            } else if bytes[i..].starts_with(b"\"\"\"") {
                return i + 3;
            } else {
                i += 1;
            }
        }
        return i;
    }
    let mut i = start + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return i + 1,
            b'\n' | b'\r' => return i,
            _ => i += 1,
        }
    }
    i
}

/// What a selection set costs with its fragments expanded.
#[derive(Clone, Copy, Default)]
struct Cost {
    /// Fields selected, every spread counted as often as it is spread.
    fields: u64,
    /// Deepest chain of fields, the outermost counted as 1.
    depth: usize,
    /// Introspection only: deepest chain of list-valued fields.
    lists: usize,
    /// Whether `__schema` or `__type` is selected.
    introspection: bool,
}

impl Cost {
    fn add(&mut self, other: Cost) {
        self.fields = self.fields.saturating_add(other.fields);
        self.depth = self.depth.max(other.depth);
        self.lists = self.lists.max(other.lists);
        self.introspection |= other.introspection;
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Mode {
    Ordinary,
    Introspection,
}

/// What [`measure`] found out about a document that fits the limits.
pub struct Measured {
    /// Whether it asks for `__schema` or `__type`.
    pub introspection: bool,
}

/// Check the parsed document: aliases and directives as written, and each operation's
/// fields and depth with every fragment expanded.
pub fn measure(document: &ExecutableDocument) -> Result<Measured, ServerError> {
    let mut written = Written::default();
    for (_, operation) in document.operations.iter() {
        written.directives += operation.node.directives.len();
        written.selection_set(&operation.node.selection_set.node);
    }
    for fragment in document.fragments.values() {
        written.directives += fragment.node.directives.len();
        written.selection_set(&fragment.node.selection_set.node);
    }
    if written.aliases > MAX_ALIASES {
        return Err(refuse(
            "aliases",
            format!("the document has more than {MAX_ALIASES} aliases"),
        ));
    }
    if written.directives > MAX_DIRECTIVES {
        return Err(refuse(
            "directives",
            format!("the document has more than {MAX_DIRECTIVES} directives"),
        ));
    }

    let mut costs: HashMap<(&Name, Mode), Cost> = HashMap::new();
    for name in fragment_order(document)? {
        let Some(fragment) = document.fragments.get(name) else {
            continue;
        };
        for mode in [Mode::Ordinary, Mode::Introspection] {
            let cost = selection_cost(&fragment.node.selection_set.node, mode, &costs)?;
            costs.insert((name, mode), cost);
        }
    }
    let mut introspection = false;
    for (_, operation) in document.operations.iter() {
        let cost = selection_cost(&operation.node.selection_set.node, Mode::Ordinary, &costs)?;
        check_fields(cost.fields)?;
        if cost.depth > MAX_DEPTH {
            return Err(refuse(
                "depth",
                format!("the query nests fields more than {MAX_DEPTH} deep"),
            ));
        }
        introspection |= cost.introspection;
    }
    Ok(Measured { introspection })
}

fn check_fields(fields: u64) -> Result<(), ServerError> {
    if fields > MAX_FIELDS {
        return Err(refuse(
            "fields",
            format!(
                "the operation selects more than {MAX_FIELDS} fields with its fragments expanded"
            ),
        ));
    }
    Ok(())
}

/// Aliases and directives as written in the text.
#[derive(Default)]
struct Written {
    aliases: usize,
    directives: usize,
}

impl Written {
    // Recursion is bounded: `scan` allowed at most MAX_NESTING levels of braces.
    fn selection_set(&mut self, set: &SelectionSet) {
        for selection in &set.items {
            match &selection.node {
                Selection::Field(field) => {
                    self.aliases += usize::from(field.node.alias.is_some());
                    self.directives += field.node.directives.len();
                    self.selection_set(&field.node.selection_set.node);
                }
                Selection::FragmentSpread(spread) => {
                    self.directives += spread.node.directives.len();
                }
                Selection::InlineFragment(inline) => {
                    self.directives += inline.node.directives.len();
                    self.selection_set(&inline.node.selection_set.node);
                }
            }
        }
    }
}

/// The cost of `set` in `mode`, given the costs of every fragment it spreads. Recursion
/// follows the text's own nesting only (at most [`MAX_NESTING`]); spreads are looked up.
fn selection_cost(
    set: &SelectionSet,
    mode: Mode,
    fragments: &HashMap<(&Name, Mode), Cost>,
) -> Result<Cost, ServerError> {
    let mut total = Cost::default();
    for selection in &set.items {
        match &selection.node {
            Selection::Field(field) => {
                let name = field.node.name.node.as_str();
                let sub = &field.node.selection_set.node;
                let cost = if mode == Mode::Ordinary && (name == "__schema" || name == "__type") {
                    let inner = selection_cost(sub, Mode::Introspection, fragments)?;
                    check_introspection(inner)?;
                    // Introspection answers count towards the fields, not the ordinary depth.
                    Cost {
                        fields: inner.fields.saturating_add(1),
                        depth: 1,
                        lists: 0,
                        introspection: true,
                    }
                } else {
                    let inner = selection_cost(sub, mode, fragments)?;
                    let is_list =
                        mode == Mode::Introspection && INTROSPECTION_LISTS.contains(&name);
                    Cost {
                        fields: inner.fields.saturating_add(1),
                        depth: inner.depth + 1,
                        lists: inner.lists + usize::from(is_list),
                        introspection: inner.introspection,
                    }
                };
                total.add(cost);
            }
            Selection::FragmentSpread(spread) => {
                let name = &spread.node.fragment_name.node;
                // An unknown fragment is reported by validation.
                if let Some(cost) = fragments.get(&(name, mode)) {
                    total.add(*cost);
                }
            }
            Selection::InlineFragment(inline) => {
                total.add(selection_cost(
                    &inline.node.selection_set.node,
                    mode,
                    fragments,
                )?);
            }
        }
        check_fields(total.fields)?;
    }
    Ok(total)
}

fn check_introspection(cost: Cost) -> Result<(), ServerError> {
    if cost.depth + 1 > MAX_INTROSPECTION_DEPTH {
        return Err(refuse(
            "depth",
            format!("introspection nests fields more than {MAX_INTROSPECTION_DEPTH} deep"),
        ));
    }
    if cost.lists > MAX_INTROSPECTION_LISTS {
        return Err(refuse(
            "introspectionLists",
            format!(
                "introspection nests more than {MAX_INTROSPECTION_LISTS} lists of the schema's types, fields or arguments"
            ),
        ));
    }
    Ok(())
}

/// Fragments ordered so that each comes after every fragment it spreads (an iterative
/// depth-first walk, so a long chain of fragments cannot exhaust the stack); a cycle is
/// refused.
fn fragment_order(document: &ExecutableDocument) -> Result<Vec<&Name>, ServerError> {
    #[derive(Clone, Copy, PartialEq)]
    enum State {
        Open,
        Done,
    }
    let spreads: HashMap<&Name, Vec<&Name>> = document
        .fragments
        .iter()
        .map(|(name, fragment)| {
            let mut found = Vec::new();
            spreads_in(&fragment.node.selection_set.node, &mut found);
            (name, found)
        })
        .collect();
    let mut state: HashMap<&Name, State> = HashMap::new();
    let mut order = Vec::with_capacity(spreads.len());
    for root in spreads.keys() {
        if state.contains_key(root) {
            continue;
        }
        // (fragment, index of the next spread to visit)
        let mut stack: Vec<(&Name, usize)> = vec![(root, 0)];
        state.insert(root, State::Open);
        while let Some((name, next)) = stack.pop() {
            let children = spreads.get(name).map(Vec::as_slice).unwrap_or_default();
            if let Some(child) = children.get(next) {
                stack.push((name, next + 1));
                match state.get(child) {
                    Some(State::Open) => {
                        return Err(refuse(
                            "fragmentCycle",
                            format!("fragment `{child}` spreads itself"),
                        ));
                    }
                    Some(State::Done) => {}
                    None if spreads.contains_key(child) => {
                        state.insert(child, State::Open);
                        stack.push((child, 0));
                    }
                    None => {}
                }
            } else {
                state.insert(name, State::Done);
                order.push(name);
            }
        }
    }
    Ok(order)
}

fn spreads_in<'a>(set: &'a SelectionSet, found: &mut Vec<&'a Name>) {
    for selection in &set.items {
        match &selection.node {
            Selection::Field(field) => spreads_in(&field.node.selection_set.node, found),
            Selection::FragmentSpread(spread) => found.push(&spread.node.fragment_name.node),
            Selection::InlineFragment(inline) => spreads_in(&inline.node.selection_set.node, found),
        }
    }
}

/// Check the variables without recursion: nesting, number of values and total size.
pub fn check_variables(variables: &Variables, max_bytes: usize) -> Result<(), ServerError> {
    use async_graphql::Value;
    let mut stack: Vec<(&Value, usize)> = variables.values().map(|v| (v, 1)).collect();
    let (mut values, mut bytes) = (0usize, 0usize);
    while let Some((value, depth)) = stack.pop() {
        values += 1;
        if depth > MAX_VARIABLE_NESTING {
            return Err(refuse(
                "variableNesting",
                format!(
                    "the variables nest lists and objects more than {MAX_VARIABLE_NESTING} deep"
                ),
            ));
        }
        if values > MAX_VARIABLE_VALUES {
            return Err(refuse(
                "variableValues",
                format!("the variables hold more than {MAX_VARIABLE_VALUES} values"),
            ));
        }
        match value {
            Value::String(s) => bytes += s.len(),
            Value::Binary(b) => bytes += b.len(),
            Value::Enum(name) => bytes += name.len(),
            Value::List(items) => stack.extend(items.iter().map(|v| (v, depth + 1))),
            Value::Object(fields) => {
                for (key, v) in fields {
                    bytes += key.len();
                    stack.push((v, depth + 1));
                }
            }
            Value::Null | Value::Number(_) | Value::Boolean(_) => bytes += 8,
        }
        if bytes > max_bytes {
            return Err(refuse(
                "variablesSize",
                format!("the variables are larger than {max_bytes} bytes"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit_of(result: Result<(), ServerError>) -> Option<String> {
        result.err().map(|error| {
            let extensions = error.extensions.expect("extensions");
            match extensions.get("limit") {
                Some(async_graphql::Value::String(limit)) => limit.clone(),
                other => panic!("no limit in {other:?}"),
            }
        })
    }

    fn measured(query: &str) -> Option<String> {
        scan(query).expect("scan");
        let document = async_graphql::parser::parse_query(query).expect("parse");
        limit_of(measure(&document).map(|_| ()))
    }

    #[test]
    fn deep_values_are_refused_without_parsing() {
        let deep = format!(
            "{{ projects(after: {}1{}) {{ totalCount }} }}",
            "[".repeat(5000),
            "]".repeat(5000)
        );
        assert_eq!(limit_of(scan(&deep)).as_deref(), Some("nesting"));
        let objects = format!("{{ a(b: {}) }}", "{c: ".repeat(100));
        assert_eq!(limit_of(scan(&objects)).as_deref(), Some("nesting"));
        // Brackets inside strings and comments do not count.
        let quoted = format!("{{ a(b: \"{}\") }} # {}", "[".repeat(100), "{".repeat(100));
        assert!(scan(&quoted).is_ok());
        let block = format!("{{ a(b: \"\"\"{}\\\"\"\"\"\") }}", "[".repeat(100));
        assert!(scan(&block).is_ok());
    }

    #[test]
    fn too_many_tokens() {
        let wide = format!("{{ {} }}", "a ".repeat(MAX_TOKENS));
        assert_eq!(limit_of(scan(&wide)).as_deref(), Some("tokens"));
    }

    #[test]
    fn fragment_bombs_count_as_expanded() {
        let mut query = String::from("query { me { ...F24 } }\nfragment F0 on User { id }\n");
        for n in 1..=24 {
            query.push_str(&format!(
                "fragment F{n} on User {{ ...F{m} ...F{m} }}\n",
                m = n - 1
            ));
        }
        assert_eq!(measured(&query).as_deref(), Some("fields"));
    }

    #[test]
    fn fragment_cycles_and_long_chains() {
        let cycle = "{ me { ...A } } fragment A on User { ...B } fragment B on User { ...A }";
        assert_eq!(measured(cycle).as_deref(), Some("fragmentCycle"));
        // A chain of 3,000 fragments is walked without recursion.
        let mut chain = String::from("{ me { ...F0 } }\n");
        for n in 0..3000 {
            chain.push_str(&format!("fragment F{n} on User {{ ...F{} }}\n", n + 1));
        }
        chain.push_str("fragment F3000 on User { id }\n");
        let document = async_graphql::parser::parse_query(&chain).expect("parse");
        assert!(measure(&document).is_ok());
    }

    #[test]
    fn depth_counts_fragments_but_not_introspection() {
        let deep_fragment = format!(
            "{{ a {{ ...F }} }} fragment F on T {{ {}x{} }}",
            "b { ".repeat(11),
            " }".repeat(11)
        );
        assert_eq!(measured(&deep_fragment).as_deref(), Some("depth"));
        let type_ref = format!("{}kind{}", "ofType { ".repeat(14), " }".repeat(14));
        let introspection = format!(
            "{{ __schema {{ types {{ fields {{ args {{ type {{ {type_ref} }} }} }} }} }} }}"
        );
        assert_eq!(measured(&introspection), None);
        let fan_out =
            "{ __schema { types { fields { type { fields { type { fields { name } } } } } } } }";
        assert_eq!(measured(fan_out).as_deref(), Some("introspectionLists"));
    }

    #[test]
    fn aliases_and_directives() {
        let aliases: String = (0..=MAX_ALIASES)
            .map(|n| format!("a{n}: me {{ id }} "))
            .collect();
        assert_eq!(
            measured(&format!("{{ {aliases} }}")).as_deref(),
            Some("aliases")
        );
        let directives = "@skip(if: false) ".repeat(MAX_DIRECTIVES + 1);
        assert_eq!(
            measured(&format!("{{ me {directives} {{ id }} }}")).as_deref(),
            Some("directives")
        );
    }

    #[test]
    fn variables() {
        let mut value = serde_json::json!(1);
        for _ in 0..MAX_VARIABLE_NESTING + 1 {
            value = serde_json::json!([value]);
        }
        let deep = Variables::from_json(serde_json::json!({ "v": value }));
        assert_eq!(
            limit_of(check_variables(&deep, 1 << 20)).as_deref(),
            Some("variableNesting")
        );
        let big = Variables::from_json(serde_json::json!({ "v": "x".repeat(2000) }));
        assert_eq!(
            limit_of(check_variables(&big, 1000)).as_deref(),
            Some("variablesSize")
        );
        let many = Variables::from_json(serde_json::json!({ "v": vec![1; MAX_VARIABLE_VALUES] }));
        assert_eq!(
            limit_of(check_variables(&many, 1 << 20)).as_deref(),
            Some("variableValues")
        );
        let fine =
            Variables::from_json(serde_json::json!({ "input": { "title": "t", "tags": [1, 2] } }));
        assert!(check_variables(&fine, 1 << 20).is_ok());
    }
}
