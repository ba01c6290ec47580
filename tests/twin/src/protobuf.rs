//! Decoding the Kubernetes protobuf encoding for the objects kubectl's typed commands create
//! (`kubectl create namespace | configmap | secret`, `kubectl auth can-i`): the `k8s\0`
//! envelope, `runtime.Unknown`, and Namespace, ConfigMap and Secret with the `ObjectMeta` fields
//! a client may set, and a SelfSubjectAccessReview's spec. Every other kind is refused with 415,
//! which tells the user to send JSON (`kubectl apply -f`).

use serde_json::{Map, Value, json};

use crate::store::base64;

const MAGIC: &[u8] = b"k8s\0";

/// Kinds whose protobuf bodies the twin decodes.
pub const DECODED_KINDS: &[&str] = &[
    "Namespace",
    "ConfigMap",
    "Secret",
    "SelfSubjectAccessReview",
];

/// Whether a `Content-Type` is the Kubernetes protobuf media type.
pub fn is_protobuf(content_type: &str) -> bool {
    content_type
        .split(';')
        .next()
        .is_some_and(|media_type| media_type.trim() == "application/vnd.kubernetes.protobuf")
}

/// The JSON form of a protobuf-encoded object of `kind`.
pub fn decode(kind: &str, body: &[u8]) -> Result<Value, String> {
    let envelope = body
        .strip_prefix(MAGIC)
        .ok_or("a protobuf body must start with the k8s\\0 magic bytes")?;
    let mut type_meta = (String::new(), String::new());
    let mut raw: &[u8] = &[];
    for field in Fields::new(envelope) {
        match field? {
            (1, Wire::Bytes(bytes)) => {
                for inner in Fields::new(bytes) {
                    match inner? {
                        (1, Wire::Bytes(text)) => type_meta.0 = utf8(text)?,
                        (2, Wire::Bytes(text)) => type_meta.1 = utf8(text)?,
                        _ => {}
                    }
                }
            }
            (2, Wire::Bytes(bytes)) => raw = bytes,
            _ => {}
        }
    }
    if !type_meta.1.is_empty() && type_meta.1 != kind {
        return Err(format!("the body holds a {}, not a {kind}", type_meta.1));
    }
    let mut object = match kind {
        "Namespace" => namespace(raw)?,
        "ConfigMap" => config_map(raw)?,
        "Secret" => secret(raw)?,
        "SelfSubjectAccessReview" => self_subject_access_review(raw)?,
        other => {
            return Err(format!(
                "the twin decodes protobuf only for {DECODED_KINDS:?}, not {other}"
            ));
        }
    };
    if !type_meta.0.is_empty() {
        object["apiVersion"] = json!(type_meta.0);
    }
    object["kind"] = json!(kind);
    Ok(object)
}

/// A decoded field value by wire type.
enum Wire<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

/// Iterates `(field number, value)` over a protobuf message.
struct Fields<'a> {
    rest: &'a [u8],
}

impl<'a> Fields<'a> {
    fn new(bytes: &'a [u8]) -> Fields<'a> {
        Fields { rest: bytes }
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = self.rest.split_first().ok_or("truncated varint")?;
            self.rest = rest;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("varint longer than 64 bits".to_string())
    }

    fn take(&mut self, length: usize) -> Result<&'a [u8], String> {
        if self.rest.len() < length {
            return Err("truncated field".to_string());
        }
        let (taken, rest) = self.rest.split_at(length);
        self.rest = rest;
        Ok(taken)
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u64, Wire<'a>), String>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let field = (|| {
            let key = self.varint()?;
            let value = match key & 7 {
                0 => Wire::Varint(self.varint()?),
                1 => {
                    self.take(8)?;
                    Wire::Fixed
                }
                2 => {
                    let length = usize::try_from(self.varint()?).map_err(|_| "field too long")?;
                    Wire::Bytes(self.take(length)?)
                }
                5 => {
                    self.take(4)?;
                    Wire::Fixed
                }
                other => return Err(format!("unsupported protobuf wire type {other}")),
            };
            Ok((key >> 3, value))
        })();
        if field.is_err() {
            self.rest = &[];
        }
        Some(field)
    }
}

fn utf8(bytes: &[u8]) -> Result<String, String> {
    String::from_utf8(bytes.to_vec()).map_err(|_| "a string field is not UTF-8".to_string())
}

/// A `map<string, string>` or `map<string, bytes>` entry (key 1, value 2).
fn map_entry(bytes: &[u8]) -> Result<(String, &[u8]), String> {
    let mut key = String::new();
    let mut value: &[u8] = &[];
    for field in Fields::new(bytes) {
        match field? {
            (1, Wire::Bytes(text)) => key = utf8(text)?,
            (2, Wire::Bytes(data)) => value = data,
            _ => {}
        }
    }
    Ok((key, value))
}

fn insert_text(map: &mut Map<String, Value>, field: &str, entry: &[u8]) -> Result<(), String> {
    let (key, value) = map_entry(entry)?;
    let target = map.entry(field).or_insert_with(|| json!({}));
    target[key] = json!(utf8(value)?);
    Ok(())
}

fn insert_bytes(map: &mut Map<String, Value>, field: &str, entry: &[u8]) -> Result<(), String> {
    let (key, value) = map_entry(entry)?;
    let target = map.entry(field).or_insert_with(|| json!({}));
    target[key] = json!(base64(value));
    Ok(())
}

/// `ObjectMeta`: the fields a client sets at creation.
fn object_meta(bytes: &[u8]) -> Result<Value, String> {
    let mut meta = Map::new();
    for field in Fields::new(bytes) {
        match field? {
            (number @ 1..=3, Wire::Bytes(text)) => {
                let name = ["name", "generateName", "namespace"][(number - 1) as usize];
                let text = utf8(text)?;
                if !text.is_empty() {
                    meta.insert(name.to_string(), json!(text));
                }
            }
            (11, Wire::Bytes(entry)) => insert_text(&mut meta, "labels", entry)?,
            (12, Wire::Bytes(entry)) => insert_text(&mut meta, "annotations", entry)?,
            (14, Wire::Bytes(text)) => {
                let finalizers = meta.entry("finalizers").or_insert_with(|| json!([]));
                if let Some(list) = finalizers.as_array_mut() {
                    list.push(json!(utf8(text)?));
                }
            }
            _ => {}
        }
    }
    Ok(Value::Object(meta))
}

fn namespace(bytes: &[u8]) -> Result<Value, String> {
    let mut object = Map::new();
    for field in Fields::new(bytes) {
        match field? {
            (1, Wire::Bytes(meta)) => {
                object.insert("metadata".to_string(), object_meta(meta)?);
            }
            (2, Wire::Bytes(spec)) => {
                let mut finalizers = Vec::new();
                for inner in Fields::new(spec) {
                    if let (1, Wire::Bytes(text)) = inner? {
                        finalizers.push(json!(utf8(text)?));
                    }
                }
                if !finalizers.is_empty() {
                    object.insert("spec".to_string(), json!({"finalizers": finalizers}));
                }
            }
            _ => {}
        }
    }
    Ok(Value::Object(object))
}

/// `spec.resourceAttributes` (namespace 1, verb 2, group 3, version 4, resource 5, subresource
/// 6, name 7) and `spec.nonResourceAttributes` (path 1, verb 2).
fn self_subject_access_review(bytes: &[u8]) -> Result<Value, String> {
    let strings = |message: &[u8], names: &[(u64, &str)]| -> Result<Value, String> {
        let mut map = Map::new();
        for field in Fields::new(message) {
            if let (number, Wire::Bytes(text)) = field?
                && let Some((_, name)) = names.iter().find(|(n, _)| *n == number)
            {
                map.insert(name.to_string(), json!(utf8(text)?));
            }
        }
        Ok(Value::Object(map))
    };
    let mut spec = Map::new();
    for field in Fields::new(bytes) {
        if let (2, Wire::Bytes(spec_bytes)) = field? {
            for inner in Fields::new(spec_bytes) {
                match inner? {
                    (1, Wire::Bytes(attributes)) => {
                        let names = [
                            (1, "namespace"),
                            (2, "verb"),
                            (3, "group"),
                            (4, "version"),
                            (5, "resource"),
                            (6, "subresource"),
                            (7, "name"),
                        ];
                        spec.insert("resourceAttributes".into(), strings(attributes, &names)?);
                    }
                    (2, Wire::Bytes(attributes)) => {
                        let names = [(1, "path"), (2, "verb")];
                        spec.insert("nonResourceAttributes".into(), strings(attributes, &names)?);
                    }
                    _ => {}
                }
            }
        }
    }
    Ok(json!({"spec": spec}))
}

fn config_map(bytes: &[u8]) -> Result<Value, String> {
    let mut object = Map::new();
    for field in Fields::new(bytes) {
        match field? {
            (1, Wire::Bytes(meta)) => {
                object.insert("metadata".to_string(), object_meta(meta)?);
            }
            (2, Wire::Bytes(entry)) => insert_text(&mut object, "data", entry)?,
            (3, Wire::Bytes(entry)) => insert_bytes(&mut object, "binaryData", entry)?,
            (4, Wire::Varint(flag)) => {
                object.insert("immutable".to_string(), json!(flag != 0));
            }
            _ => {}
        }
    }
    Ok(Value::Object(object))
}

fn secret(bytes: &[u8]) -> Result<Value, String> {
    let mut object = Map::new();
    for field in Fields::new(bytes) {
        match field? {
            (1, Wire::Bytes(meta)) => {
                object.insert("metadata".to_string(), object_meta(meta)?);
            }
            (2, Wire::Bytes(entry)) => insert_bytes(&mut object, "data", entry)?,
            (3, Wire::Bytes(text)) => {
                let text = utf8(text)?;
                if !text.is_empty() {
                    object.insert("type".to_string(), json!(text));
                }
            }
            (4, Wire::Bytes(entry)) => insert_text(&mut object, "stringData", entry)?,
            (5, Wire::Varint(flag)) => {
                object.insert("immutable".to_string(), json!(flag != 0));
            }
            _ => {}
        }
    }
    Ok(Value::Object(object))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bodies kubectl v1.32 sends for `kubectl create namespace|secret generic|configmap`.
    const NAMESPACE: &[u8] = b"k8s\0\x0a\x0f\x0a\x02v1\x12\x09Namespace\x12\x1d\x0a\x15\x0a\x05vault\x12\x00\x1a\x00\x22\x00\x2a\x00\x32\x00\x38\x00\x42\x00\x12\x00\x1a\x02\x0a\x00\x1a\x00\x22\x00";
    const SECRET: &[u8] = b"k8s\0\x0a\x0c\x0a\x02v1\x12\x06Secret\x12\x23\x0a\x11\x0a\x01s\x12\x00\x1a\x00\x22\x00\x2a\x00\x32\x00\x38\x00\x42\x00\x12\x06\x0a\x01a\x12\x01b\x1a\x06Opaque\x1a\x00\x22\x00";
    const CONFIG_MAP: &[u8] = b"k8s\0\x0a\x0f\x0a\x02v1\x12\x09ConfigMap\x12\x1b\x0a\x11\x0a\x01c\x12\x00\x1a\x00\x22\x00\x2a\x00\x32\x00\x38\x00\x42\x00\x12\x06\x0a\x01a\x12\x01b\x1a\x00\x22\x00";

    #[test]
    fn decodes_what_kubectl_create_sends() {
        assert_eq!(
            decode("Namespace", NAMESPACE).unwrap(),
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "vault"}})
        );
        assert_eq!(
            decode("Secret", SECRET).unwrap(),
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "data": {"a": "Yg=="}, "type": "Opaque"})
        );
        assert_eq!(
            decode("ConfigMap", CONFIG_MAP).unwrap(),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "b"}})
        );
    }

    #[test]
    fn refuses_other_kinds_and_garbage() {
        assert!(decode("Pod", CONFIG_MAP).is_err());
        assert!(
            decode("Secret", CONFIG_MAP).is_err(),
            "the envelope names another kind"
        );
        assert!(decode("ConfigMap", b"{}").is_err());
        assert!(decode("ConfigMap", b"k8s\0\x12\xff").is_err());
        for length in 0..CONFIG_MAP.len() {
            let _ = decode("ConfigMap", &CONFIG_MAP[..length]);
        }
    }
}
