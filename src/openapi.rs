//! The OpenAPI 3.1 document of the REST surface, derived from the
//! descriptor set the build compiles from `proto/` (messages, fields, their
//! comments, and each method's `google.api.http` bindings) — never written
//! by hand. `orgd openapi --out FILE` writes it; Envoy serves it at
//! `GET /openapi.json`.
//!
//! What the protos cannot say is REST's shape of a few replies, which
//! orgd's response hints give them through Envoy (see `api/mod.rs`): creates
//! answer 201, deletes 204 with no body, a reply holding one resource is
//! that resource, and ListOrganizations is a bare array with the total in
//! `x-total-count`. Those are listed here, per RPC.

use std::collections::{BTreeMap, BTreeSet};

use prost::Message;
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, FileDescriptorSet};
use serde_json::{Value, json};

/// The parts of descriptor.proto the typed prost-types do not decode: the
/// `google.api.http` option of each method.
mod raw {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct FileSet {
        #[prost(message, repeated, tag = "1")]
        pub file: Vec<File>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct File {
        #[prost(message, repeated, tag = "6")]
        pub service: Vec<Service>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Service {
        #[prost(message, repeated, tag = "2")]
        pub method: Vec<Method>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Method {
        #[prost(message, optional, tag = "4")]
        pub options: Option<MethodOptions>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct MethodOptions {
        /// (google.api.http)
        #[prost(message, optional, tag = "72295728")]
        pub http: Option<HttpRule>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct HttpRule {
        #[prost(string, optional, tag = "2")]
        pub get: Option<String>,
        #[prost(string, optional, tag = "3")]
        pub put: Option<String>,
        #[prost(string, optional, tag = "4")]
        pub post: Option<String>,
        #[prost(string, optional, tag = "5")]
        pub delete: Option<String>,
        #[prost(string, optional, tag = "6")]
        pub patch: Option<String>,
        #[prost(string, optional, tag = "7")]
        pub body: Option<String>,
        #[prost(message, repeated, tag = "11")]
        pub additional_bindings: Vec<HttpRule>,
    }
}

/// How an RPC's reply looks to a REST caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// The response message as JSON.
    Message,
    /// The response's one field, alone (a single resource).
    Unwrap,
    /// 201 Created with the single resource.
    Created,
    /// 204 No Content.
    NoContent,
    /// A bare JSON array of `items`, the total in `x-total-count`.
    BareItems,
    /// A stream of raw NDJSON bytes (google.api.HttpBody).
    Ndjson,
    /// A stream of messages, one JSON object per line.
    JsonLines,
}

fn shape(rpc: &str) -> Shape {
    match rpc {
        "CreateOrganization" | "AddSpace" | "AddUser" | "CreateSpace" | "AddSpaceMember"
        | "CreateInvitation" => Shape::Created,
        "GetOrganization"
        | "UpdateOrganization"
        | "UpdateUserRole"
        | "GetSpace"
        | "UpdateSpace"
        | "UpdateSpaceMember"
        | "GetAuditCheckpoint"
        | "UndeleteOrganization"
        | "UndeleteSpace" => Shape::Unwrap,
        "ListOrganizations" => Shape::BareItems,
        "ExportAuditEvents" => Shape::Ndjson,
        "WatchEvents" => Shape::JsonLines,
        r if r.starts_with("Delete") || r.starts_with("Remove") => Shape::NoContent,
        _ => Shape::Message,
    }
}

struct Messages<'a> {
    /// ".orgd.v1.Space" -> (descriptor, its comments: own and per field).
    by_name: BTreeMap<String, (&'a DescriptorProto, String, BTreeMap<String, String>)>,
}

fn comment_of(locations: &[prost_types::source_code_info::Location], path: &[i32]) -> String {
    locations
        .iter()
        .find(|l| l.path == path)
        .and_then(|l| l.leading_comments.as_deref())
        .map(|c| {
            c.lines()
                .map(str::trim)
                .collect::<Vec<_>>()
                .join(" ")
                .trim()
                .to_owned()
        })
        .unwrap_or_default()
}

impl<'a> Messages<'a> {
    fn index(set: &'a FileDescriptorSet) -> Self {
        let mut by_name = BTreeMap::new();
        for file in &set.file {
            let locations = file
                .source_code_info
                .as_ref()
                .map(|s| s.location.as_slice())
                .unwrap_or_default();
            let package = file.package();
            for (i, message) in file.message_type.iter().enumerate() {
                let path = vec![4, i as i32];
                Self::add(&mut by_name, &format!(".{package}"), message, locations, path);
            }
        }
        Self { by_name }
    }

    fn add(
        by_name: &mut BTreeMap<String, (&'a DescriptorProto, String, BTreeMap<String, String>)>,
        scope: &str,
        message: &'a DescriptorProto,
        locations: &[prost_types::source_code_info::Location],
        path: Vec<i32>,
    ) {
        let name = format!("{scope}.{}", message.name());
        let fields = message
            .field
            .iter()
            .enumerate()
            .map(|(j, f)| {
                let mut p = path.clone();
                p.extend([2, j as i32]);
                (f.name().to_owned(), comment_of(locations, &p))
            })
            .collect();
        for (k, nested) in message.nested_type.iter().enumerate() {
            let mut p = path.clone();
            p.extend([3, k as i32]);
            Self::add(by_name, &name, nested, locations, p);
        }
        by_name.insert(name, (message, comment_of(locations, &path), fields));
    }
}

/// The schema of one field's value (without `repeated`).
fn value_schema(field: &prost_types::FieldDescriptorProto, wanted: &mut BTreeSet<String>) -> Value {
    match field.r#type() {
        Type::Double | Type::Float => json!({"type": "number"}),
        Type::Int32 | Type::Uint32 | Type::Sint32 | Type::Fixed32 | Type::Sfixed32 => {
            json!({"type": "integer", "format": "int32"})
        }
        // The proto JSON mapping prints 64-bit integers as strings.
        Type::Int64 | Type::Uint64 | Type::Sint64 | Type::Fixed64 | Type::Sfixed64 => {
            json!({"type": "string", "format": "int64"})
        }
        Type::Bool => json!({"type": "boolean"}),
        Type::String => json!({"type": "string"}),
        Type::Bytes => json!({"type": "string", "contentEncoding": "base64"}),
        Type::Enum => json!({"type": "string"}),
        Type::Message | Type::Group => match field.type_name() {
            ".google.protobuf.Timestamp" => json!({"type": "string", "format": "date-time"}),
            ".google.protobuf.Duration" => json!({"type": "string"}),
            ".google.protobuf.Struct" => json!({"type": "object"}),
            ".google.protobuf.Any" => json!({"type": "object"}),
            name => {
                wanted.insert(name.to_owned());
                json!({"$ref": format!("#/components/schemas/{}", schema_name(name))})
            }
        },
    }
}

fn schema_name(full: &str) -> String {
    full.trim_start_matches('.')
        .strip_prefix("orgd.v1.")
        .unwrap_or(full.trim_start_matches('.'))
        .replace('.', "_")
}

fn field_schema(
    messages: &Messages,
    field: &prost_types::FieldDescriptorProto,
    doc: &str,
    wanted: &mut BTreeSet<String>,
) -> Value {
    // A map is a repeated entry message; its JSON is an object.
    let map_value = (field.label() == Label::Repeated && field.r#type() == Type::Message)
        .then(|| messages.by_name.get(field.type_name()))
        .flatten()
        .filter(|(entry, _, _)| entry.options.as_ref().is_some_and(|o| o.map_entry()))
        .and_then(|(entry, _, _)| entry.field.iter().find(|f| f.name() == "value").cloned());
    let mut schema = match &map_value {
        Some(value) => json!({"type": "object", "additionalProperties": value_schema(value, wanted)}),
        None => value_schema(field, wanted),
    };
    if field.label() == Label::Repeated && map_value.is_none() {
        schema = json!({"type": "array", "items": schema});
    }
    if !doc.is_empty()
        && let Some(object) = schema.as_object_mut()
        && !object.contains_key("$ref")
    {
        object.insert("description".into(), Value::String(doc.to_owned()));
    }
    schema
}

/// An object schema of a message, leaving out `skip` (path variables).
fn object_schema(
    messages: &Messages,
    name: &str,
    skip: &BTreeSet<String>,
    wanted: &mut BTreeSet<String>,
) -> Value {
    let Some((message, doc, docs)) = messages.by_name.get(name) else {
        return json!({"type": "object"});
    };
    let mut properties = serde_json::Map::new();
    for field in &message.field {
        if skip.contains(field.name()) {
            continue;
        }
        let field_doc = docs.get(field.name()).map(String::as_str).unwrap_or_default();
        properties.insert(
            field.name().to_owned(),
            field_schema(messages, field, field_doc, wanted),
        );
    }
    let mut schema = json!({"type": "object", "properties": properties});
    if !doc.is_empty() {
        schema["description"] = Value::String(doc.clone());
    }
    schema
}

fn path_variables(path: &str) -> Vec<String> {
    path.split('{')
        .skip(1)
        .filter_map(|rest| {
            rest.split_once('}')
                .map(|(v, _)| v.split('=').next().unwrap_or(v).to_owned())
        })
        .collect()
}

/// The OpenAPI document.
pub fn document() -> Result<Value, String> {
    let bytes = crate::proto::FILE_DESCRIPTOR_SET;
    let set = FileDescriptorSet::decode(bytes).map_err(|e| format!("decoding the descriptor set: {e}"))?;
    let raw = raw::FileSet::decode(bytes).map_err(|e| format!("decoding the descriptor set: {e}"))?;
    let messages = Messages::index(&set);
    let mut wanted = BTreeSet::new();
    let mut paths: BTreeMap<String, serde_json::Map<String, Value>> = BTreeMap::new();

    for (file, raw_file) in set.file.iter().zip(&raw.file) {
        if file.package() != "orgd.v1" {
            continue;
        }
        let locations = file
            .source_code_info
            .as_ref()
            .map(|s| s.location.as_slice())
            .unwrap_or_default();
        for (s, (service, raw_service)) in file.service.iter().zip(&raw_file.service).enumerate() {
            for (m, (method, raw_method)) in service.method.iter().zip(&raw_service.method).enumerate() {
                let Some(rule) = raw_method.options.as_ref().and_then(|o| o.http.as_ref()) else {
                    continue;
                };
                let doc = comment_of(locations, &[6, s as i32, 2, m as i32]);
                let mut bindings = vec![rule.clone()];
                bindings.extend(rule.additional_bindings.iter().cloned());
                for (b, binding) in bindings.iter().enumerate() {
                    let Some((verb, path)) = [
                        ("get", &binding.get),
                        ("put", &binding.put),
                        ("post", &binding.post),
                        ("delete", &binding.delete),
                        ("patch", &binding.patch),
                    ]
                    .into_iter()
                    .find_map(|(v, p)| p.as_deref().map(|p| (v, p.to_owned()))) else {
                        continue;
                    };
                    let operation_id = if b == 0 {
                        format!("{}.{}", service.name(), method.name())
                    } else {
                        format!("{}.{}.{b}", service.name(), method.name())
                    };
                    let op = operation(
                        &messages,
                        method,
                        &path,
                        binding.body.as_deref().unwrap_or_default(),
                        &doc,
                        &operation_id,
                        &mut wanted,
                    );
                    paths.entry(path).or_default().insert(verb.to_owned(), op);
                }
            }
        }
    }

    // Every message a path refers to, and those they refer to.
    let mut schemas = serde_json::Map::new();
    let mut done = BTreeSet::new();
    while let Some(name) = wanted.iter().find(|n| !done.contains(*n)).cloned() {
        done.insert(name.clone());
        let schema = object_schema(&messages, &name, &BTreeSet::new(), &mut wanted);
        schemas.insert(schema_name(&name), schema);
    }
    schemas.insert(
        "Error".into(),
        json!({
            "type": "object",
            "description": "Every error: the gRPC code, a message for a person, and details including a google.rpc.ErrorInfo (domain \"orgd\", an UPPER_SNAKE reason, the offending field or value) and a google.rpc.RequestInfo (the request id to quote).",
            "properties": {
                "code": {"type": "integer"},
                "message": {"type": "string"},
                "details": {"type": "array", "items": {"type": "object", "properties": {"@type": {"type": "string"}}}}
            },
            "required": ["code", "message"]
        }),
    );

    Ok(json!({
        "openapi": "3.1.0",
        "info": {
            "title": "orgd",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Organizations, spaces and members, and each organization's aggregated view of its spaces' data products, contracts, issues and quality checks. Every call takes `authorization: Bearer <JWT>`."
        },
        "servers": [{"url": "http://127.0.0.1:8080"}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}
        }
    }))
}

fn operation(
    messages: &Messages,
    method: &prost_types::MethodDescriptorProto,
    path: &str,
    body: &str,
    doc: &str,
    operation_id: &str,
    wanted: &mut BTreeSet<String>,
) -> Value {
    let variables: BTreeSet<String> = path_variables(path).into_iter().collect();
    let mut parameters: Vec<Value> = variables
        .iter()
        .map(|v| json!({"name": v, "in": "path", "required": true, "schema": {"type": "string"}}))
        .collect();
    let input = method.input_type();
    let mut op = serde_json::Map::new();
    op.insert("operationId".into(), json!(operation_id));
    op.insert("summary".into(), json!(method.name()));
    if !doc.is_empty() {
        op.insert("description".into(), json!(doc));
    }
    if body == "*" {
        let schema = object_schema(messages, input, &variables, wanted);
        op.insert(
            "requestBody".into(),
            json!({"required": true, "content": {"application/json": {"schema": schema}}}),
        );
    } else if let Some((message, _, docs)) = messages.by_name.get(input) {
        // Everything else is a query parameter (scalars and lists of them).
        for field in &message.field {
            if variables.contains(field.name()) {
                continue;
            }
            let field_doc = docs.get(field.name()).map(String::as_str).unwrap_or_default();
            let mut schema = field_schema(messages, field, field_doc, wanted);
            if let Some(object) = schema.as_object_mut() {
                object.remove("description");
            }
            let mut parameter =
                json!({"name": field.name(), "in": "query", "required": false, "schema": schema});
            if !field_doc.is_empty() {
                parameter["description"] = json!(field_doc);
            }
            if field.label() == Label::Repeated {
                parameter["explode"] = json!(true);
            }
            parameters.push(parameter);
        }
    }
    op.insert("parameters".into(), Value::Array(parameters));

    let output = method.output_type();
    let only_field = messages
        .by_name
        .get(output)
        .and_then(|(m, _, _)| (m.field.len() == 1).then(|| m.field[0].clone()));
    let error = json!({"description": "an error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}});
    // Every status a REST caller can get besides success (SPEC §3).
    let errors = |mut responses: Value| {
        for (code, what) in [
            (
                "400",
                "invalid argument, failed precondition, or a request Envoy could not transcode",
            ),
            ("401", "no valid bearer token"),
            ("403", "not authorized"),
            ("404", "not found"),
            ("409", "already exists, or aborted (a conflict or a stale etag)"),
            ("413", "a request body larger than Envoy accepts"),
            (
                "429",
                "resource exhausted: the storage is full or a request too large",
            ),
            ("501", "not implemented"),
            ("503", "unavailable: the database is down or busy; try again"),
            ("504", "the upstream took too long"),
        ] {
            let mut reply = error.clone();
            reply["description"] = json!(what);
            responses[code] = reply;
        }
        responses
    };
    let ok = |schema: Value| json!({"content": {"application/json": {"schema": schema}}});
    let responses = match shape(method.name()) {
        Shape::NoContent => errors(json!({"204": {"description": "done"}})),
        Shape::Created | Shape::Unwrap => {
            let schema = only_field
                .as_ref()
                .map(|f| value_schema(f, wanted))
                .unwrap_or_else(|| object_schema(messages, output, &BTreeSet::new(), wanted));
            let mut reply = ok(schema);
            reply["description"] = json!("the resource");
            let code = if shape(method.name()) == Shape::Created {
                "201"
            } else {
                "200"
            };
            errors(json!({code: reply}))
        }
        Shape::BareItems => {
            let items = messages
                .by_name
                .get(output)
                .and_then(|(m, _, _)| m.field.iter().find(|f| f.name() == "items"))
                .map(|f| field_schema(messages, f, "", wanted))
                .unwrap_or_else(|| json!({"type": "array"}));
            let mut reply = ok(items);
            reply["description"] = json!("the items of the page; the total is in x-total-count");
            reply["headers"] = json!({"x-total-count": {"schema": {"type": "integer"}}});
            errors(json!({"200": reply}))
        }
        Shape::Ndjson => errors(json!({
            "200": {"description": "a header line, then one line per event", "content": {"application/x-ndjson": {"schema": {"type": "string"}}}}
        })),
        Shape::JsonLines | Shape::Message => {
            let mut reply = ok(object_schema(messages, output, &BTreeSet::new(), wanted));
            reply["description"] = json!(if shape(method.name()) == Shape::JsonLines {
                "one JSON object per line, as events commit"
            } else {
                "the response"
            });
            errors(json!({"200": reply}))
        }
    };
    op.insert("responses".into(), responses);
    Value::Object(op)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_http_binding_becomes_an_operation() {
        let doc = document().expect("document");
        let paths = doc["paths"].as_object().expect("paths");
        let operations: usize = paths.values().map(|p| p.as_object().map_or(0, |o| o.len())).sum();
        // 25 + 20 + 5 RPCs, plus the audit RPCs' by-id bindings.
        assert_eq!(operations, 50 + 6, "{:?}", paths.keys().collect::<Vec<_>>());
        assert!(paths["/organizations/{slug}"]["get"]["responses"]["200"].is_object());
        assert!(paths["/organizations"]["post"]["responses"]["201"].is_object());
        assert!(paths["/organizations/{slug}"]["delete"]["responses"]["204"].is_object());
        let list = &paths["/organizations"]["get"]["responses"]["200"];
        assert_eq!(list["content"]["application/json"]["schema"]["type"], "array");
        // Path variables are not in the body.
        let update =
            &paths["/organizations/{slug}"]["patch"]["requestBody"]["content"]["application/json"]["schema"];
        assert!(update["properties"].get("slug").is_none());
        assert!(update["properties"].get("new_slug").is_some());
        // int64 prints as a string, int32 as a number.
        let event = &doc["components"]["schemas"]["AuditEvent"]["properties"];
        assert_eq!(event["seq"]["type"], "string");
        let users =
            &paths["/organizations/{slug}/users"]["get"]["responses"]["200"]["content"]["application/json"];
        assert_eq!(users["schema"]["properties"]["total"]["type"], "integer");
    }
}
