//! Reading: get one object, list a type (in a namespace or all) filtered by label and field
//! selectors and paged with `limit` and `continue`.

use serde_json::{json, Value};

use super::{meta, name_of, ApiError, ApiResult};
use crate::ids;
use crate::registry::ResourceType;
use crate::selector::Selector;
use crate::store::{self, ObjKey, Store};

impl Store {
    pub(super) fn lookup(&self, rt: &ResourceType, ns: &str, name: &str) -> Option<&Value> {
        self.objects.get(&store::key(rt, ns, name))
    }

    pub fn get(&self, rt: &ResourceType, ns: &str, name: &str) -> ApiResult {
        self.lookup(rt, ns, name)
            .cloned()
            .ok_or_else(|| ApiError::not_found(rt, name))
    }

    /// Lists objects of a type, in a namespace or all, filtered and paged.
    pub fn list(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        labels: &Selector,
        fields: &Selector,
        limit: Option<usize>,
        cont: Option<&str>,
    ) -> ApiResult {
        let start: Option<ObjKey> = match cont {
            Some(c) if !c.is_empty() => {
                let k = ids::parse_continue(c)
                    .ok_or_else(|| ApiError::bad_request("invalid continue token"))?;
                Some((rt.group.clone(), rt.plural.clone(), k.0, k.1))
            }
            _ => None,
        };
        let lo = (
            rt.group.clone(),
            rt.plural.clone(),
            String::new(),
            String::new(),
        );
        let mut items = Vec::new();
        let mut next = None;
        for (k, obj) in self.objects.range(lo..) {
            if k.0 != rt.group || k.1 != rt.plural {
                break;
            }
            if start.as_ref().is_some_and(|s| k <= s) {
                continue;
            }
            if ns.is_some_and(|n| k.2 != n) {
                continue;
            }
            if !labels.matches_labels(obj) || !fields.matches_fields(obj) {
                continue;
            }
            if limit.is_some_and(|l| l > 0 && items.len() >= l) {
                let (last_ns, last_name) = items_last_key(&items);
                next = Some(ids::continue_token(&last_ns, &last_name));
                break;
            }
            items.push(obj.clone());
        }
        let mut md = json!({"resourceVersion": self.rv.to_string()});
        if let Some(n) = next {
            md["continue"] = Value::String(n);
        }
        Ok(json!({
            "kind": format!("{}List", rt.kind),
            "apiVersion": rt.api_version(),
            "metadata": md,
            "items": items,
        }))
    }
}

fn items_last_key(items: &[Value]) -> (String, String) {
    let last = items.last().cloned().unwrap_or_default();
    (
        meta(&last)["namespace"].as_str().unwrap_or("").to_string(),
        name_of(&last),
    )
}
