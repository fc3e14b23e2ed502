//! The SDL frontend teams generate clients from: everything in it says what it is.

use async_graphql::parser::parse_schema;
use async_graphql::parser::types::{TypeKind, TypeSystemDefinition};
use codecrafter_tests::serde_json::json;
use codecrafter_tests::{Backend, run};

#[test]
fn every_type_field_argument_and_value_is_described() {
    let document = parse_schema(schema::sdl()).expect("the SDL parses");
    let mut missing = Vec::new();
    let described = |d: &Option<async_graphql::Positioned<String>>| {
        d.as_ref().is_some_and(|d| !d.node.trim().is_empty())
    };
    for definition in &document.definitions {
        let TypeSystemDefinition::Type(ty) = definition else {
            continue;
        };
        let ty = &ty.node;
        let name = ty.name.node.as_str();
        if !described(&ty.description)
            || ty
                .description
                .as_ref()
                .is_some_and(|d| d.node.contains("Implement the"))
        {
            missing.push(name.to_owned());
        }
        let fields = match &ty.kind {
            TypeKind::Object(object) => &object.fields,
            TypeKind::Interface(interface) => &interface.fields,
            TypeKind::InputObject(input) => {
                for field in &input.fields {
                    if !described(&field.node.description) {
                        missing.push(format!("{name}.{}", field.node.name.node));
                    }
                }
                continue;
            }
            TypeKind::Enum(values) => {
                for value in &values.values {
                    if !described(&value.node.description) {
                        missing.push(format!("{name}::{}", value.node.value.node));
                    }
                }
                continue;
            }
            _ => continue,
        };
        for field in fields {
            let field = &field.node;
            if !described(&field.description) {
                missing.push(format!("{name}.{}", field.name.node));
            }
            for argument in &field.arguments {
                if !described(&argument.node.description) {
                    missing.push(format!(
                        "{name}.{}({})",
                        field.name.node, argument.node.name.node
                    ));
                }
            }
        }
    }
    assert!(missing.is_empty(), "undescribed in the SDL: {missing:#?}");
}

#[tokio::test]
async fn binary_scalars_are_described_and_specified() {
    run(Backend::Sqlite, |app| async move {
        let answer = app
            .gql(
                r#"{ base64: __type(name: "Base64") { description specifiedByURL }
                     vv: __type(name: "VersionVector") { description specifiedByURL } }"#,
                json!({}),
            )
            .await;
        let data = answer.data();
        assert!(data["base64"]["specifiedByURL"].as_str().unwrap().contains("rfc4648"), "{data}");
        assert!(data["vv"]["specifiedByURL"].as_str().unwrap().contains("VersionVector"), "{data}");
        assert!(data["vv"]["description"].as_str().unwrap().contains("version vector"), "{data}");
        assert!(data["base64"]["description"].as_str().unwrap().contains("base64"), "{data}");
        // `since` and the version vectors the server answers with use the dedicated scalar.
        let since = app
            .gql(
                r#"{ __type(name: "Subscription") { fields { name args { name type { name } } } } }"#,
                json!({}),
            )
            .await;
        let fields = since.data()["__type"]["fields"].as_array().unwrap().clone();
        let updates = fields.iter().find(|f| f["name"] == "documentUpdates").unwrap();
        let arg = updates["args"].as_array().unwrap().iter().find(|a| a["name"] == "since").unwrap();
        assert_eq!(arg["type"]["name"], "VersionVector");
    })
    .await;
}
