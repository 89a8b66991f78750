//! Generated schemas with a document each that satisfies them: the document validates, and
//! each single mutation of it (one value changed, one required member removed, one member
//! added to a closed object, one item too many) yields exactly one violation, at its pointer.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use serde_json::{json, Value};

use super::{push_token, Schema};

#[derive(Debug, Clone)]
enum Shape {
    Str { min: usize, max: usize, value: String },
    Int { min: i64, max: i64, value: i64 },
    Choice { options: Vec<String>, pick: usize },
    Uuid(String),
    Flag(bool),
    List { min: i64, max: i64, max_items: usize, values: Vec<i64> },
    Object { members: BTreeMap<String, (Shape, bool)>, closed: bool },
}

/// One change to a valid document and the (pointer, rule) it must be reported as.
#[derive(Debug, Clone)]
enum Mutation {
    Replace(String, Value, &'static str),
    Remove { parent: String, name: String },
    Add { parent: String },
    Push { list: String, value: Value },
}

fn leaf() -> impl Strategy<Value = Shape> {
    prop_oneof![
        (0usize..5, 0usize..8).prop_flat_map(|(min, extra)| {
            proptest::collection::vec(prop::sample::select(vec!['a', 'z', 'é', '/', '7']), min..=min + extra)
                .prop_map(move |chars| Shape::Str { min, max: min + extra, value: chars.into_iter().collect() })
        }),
        (-100i64..100, 0i64..50)
            .prop_flat_map(|(min, width)| (min..=min + width).prop_map(move |value| Shape::Int { min, max: min + width, value })),
        (proptest::collection::btree_set("[a-z]{1,4}", 1..4), any::<prop::sample::Index>()).prop_map(
            |(options, pick): (BTreeSet<String>, prop::sample::Index)| {
                let pick = pick.index(options.len());
                Shape::Choice { options: options.into_iter().collect(), pick }
            }
        ),
        any::<[u8; 16]>().prop_map(|b| {
            let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
            Shape::Uuid(format!("{}-{}-{}-{}-{}", &hex[0..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..32]))
        }),
        any::<bool>().prop_map(Shape::Flag),
        (-10i64..10, 0usize..4).prop_flat_map(|(min, max_items)| {
            proptest::collection::vec(min..=min + 5, 0..=max_items)
                .prop_map(move |values| Shape::List { min, max: min + 5, max_items, values })
        }),
    ]
}

fn object(inner: impl Strategy<Value = Shape>, members: std::ops::Range<usize>) -> impl Strategy<Value = Shape> {
    (proptest::collection::btree_map("[a-z/~]{1,5}", (inner, any::<bool>()), members), any::<bool>())
        .prop_map(|(members, closed)| Shape::Object { members, closed })
}

fn document_shape() -> impl Strategy<Value = Shape> {
    let shape = leaf().prop_recursive(3, 24, 4, |inner| object(inner, 0..4));
    object(shape, 1..5)
}

fn schema_of(shape: &Shape) -> Value {
    match shape {
        Shape::Str { min, max, .. } => json!({"type": "string", "minLength": min, "maxLength": max}),
        Shape::Int { min, max, .. } => json!({"type": "integer", "minimum": min, "maximum": max}),
        Shape::Choice { options, .. } => json!({"type": "string", "enum": options}),
        Shape::Uuid(_) => json!({"type": "string", "format": "uuid"}),
        Shape::Flag(_) => json!({"type": "boolean"}),
        Shape::List { min, max, max_items, .. } => {
            json!({"type": "array", "maxItems": max_items, "items": {"type": "integer", "minimum": min, "maximum": max}})
        }
        Shape::Object { members, closed } => {
            let properties: serde_json::Map<String, Value> =
                members.iter().map(|(name, (shape, _))| (name.clone(), schema_of(shape))).collect();
            let required: Vec<&String> = members.iter().filter(|(_, (_, required))| *required).map(|(n, _)| n).collect();
            json!({"type": "object", "properties": properties, "required": required, "additionalProperties": !closed})
        }
    }
}

fn document_of(shape: &Shape) -> Value {
    match shape {
        Shape::Str { value, .. } => json!(value),
        Shape::Int { value, .. } => json!(value),
        Shape::Choice { options, pick } => json!(options[*pick]),
        Shape::Uuid(value) => json!(value),
        Shape::Flag(value) => json!(value),
        Shape::List { values, .. } => json!(values),
        Shape::Object { members, .. } => {
            Value::Object(members.iter().map(|(name, (shape, _))| (name.clone(), document_of(shape))).collect())
        }
    }
}

fn mutations(shape: &Shape, at: &str, out: &mut Vec<Mutation>) {
    let replace = |value: Value, rule| Mutation::Replace(at.to_owned(), value, rule);
    match shape {
        Shape::Str { max, .. } => {
            out.push(replace(json!(12345), "type"));
            out.push(replace(json!("a".repeat(max + 1)), "maxLength"));
        }
        Shape::Int { max, .. } => {
            out.push(replace(json!("7"), "type"));
            out.push(replace(json!(max + 1), "maximum"));
            out.push(replace(json!(0.5), "type"));
        }
        Shape::Choice { .. } => out.push(replace(json!("zzzzzzz"), "enum")),
        Shape::Uuid(_) => out.push(replace(json!("not-a-uuid"), "format")),
        Shape::Flag(_) => out.push(replace(json!("true"), "type")),
        Shape::List { max, max_items, values, min } => {
            out.push(replace(json!({}), "type"));
            for index in 0..values.len() {
                out.push(Mutation::Replace(format!("{at}/{index}"), json!(max + 1), "maximum"));
            }
            if values.len() == *max_items {
                out.push(Mutation::Push { list: at.to_owned(), value: json!(min) });
            }
        }
        Shape::Object { members, closed } => {
            out.push(replace(json!([]), "type"));
            if *closed {
                out.push(Mutation::Add { parent: at.to_owned() });
            }
            for (name, (member, required)) in members {
                let mut pointer = at.to_owned();
                push_token(&mut pointer, name);
                if *required {
                    out.push(Mutation::Remove { parent: at.to_owned(), name: name.clone() });
                }
                mutations(member, &pointer, out);
            }
        }
    }
}

/// Applies `mutation` to `doc` and returns the (pointer, rule) it must produce.
fn apply(doc: &mut Value, mutation: &Mutation) -> (String, &'static str) {
    match mutation {
        Mutation::Replace(pointer, value, rule) => {
            *doc.pointer_mut(pointer).unwrap() = value.clone();
            (pointer.clone(), rule)
        }
        Mutation::Remove { parent, name } => {
            doc.pointer_mut(parent).unwrap().as_object_mut().unwrap().remove(name);
            let mut pointer = parent.clone();
            push_token(&mut pointer, name);
            (pointer, "required")
        }
        Mutation::Add { parent } => {
            // Generated names have at most 5 characters: this one is never a declared member.
            doc.pointer_mut(parent).unwrap().as_object_mut().unwrap().insert("undeclared".into(), json!(1));
            (format!("{parent}/undeclared"), "additionalProperties")
        }
        Mutation::Push { list, value } => {
            doc.pointer_mut(list).unwrap().as_array_mut().unwrap().push(value.clone());
            (list.clone(), "maxItems")
        }
    }
}

proptest! {
    #[test]
    fn a_generated_document_validates(shape in document_shape()) {
        let schema = Schema::compile(&schema_of(&shape)).unwrap();
        prop_assert_eq!(schema.validate(&document_of(&shape)), vec![]);
    }

    #[test]
    fn one_mutation_is_one_violation_at_its_pointer(shape in document_shape(), pick in any::<prop::sample::Index>()) {
        let schema = Schema::compile(&schema_of(&shape)).unwrap();
        let mut sites = Vec::new();
        mutations(&shape, "", &mut sites);
        let mutation = &sites[pick.index(sites.len())];
        let mut doc = document_of(&shape);
        let (pointer, rule) = apply(&mut doc, mutation);
        let violations = schema.validate(&doc);
        prop_assert_eq!(violations.len(), 1, "{:?} gave {:?}", mutation, violations);
        prop_assert_eq!(&violations[0].field, &pointer);
        prop_assert_eq!(violations[0].rule, rule);
    }

    #[test]
    fn arbitrary_json_never_panics(doc in arbitrary_json()) {
        let schema = Schema::compile(&schema_of(&Shape::Object { members: BTreeMap::new(), closed: true })).unwrap();
        let _ = schema.validate(&doc);
        let _ = Schema::compile(&doc);
    }
}

fn arbitrary_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        "[a-z$]{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map(
                prop::sample::select(vec!["type", "items", "properties", "required", "minimum", "enum", "pattern", "x"]),
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())),
        ]
    })
}
