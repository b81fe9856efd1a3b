//! Per-node state that persists across ticks: a JSON key/value map and named pools.

use std::collections::{BTreeMap, HashMap};

use serde_json::{Map, Value};

#[derive(Default, Debug)]
pub(crate) struct ActorState {
    pub(crate) values: Map<String, Value>,
    pools: HashMap<String, BTreeMap<String, Value>>,
}

impl ActorState {
    pub(crate) fn pool_upsert(&mut self, pool: &str, key: &str, value: Value) {
        self.pools
            .entry(pool.to_string())
            .or_default()
            .insert(key.to_string(), value);
    }

    pub(crate) fn pool_get(&self, pool: &str, key: &str) -> Option<&Value> {
        self.pools.get(pool)?.get(key)
    }

    pub(crate) fn pool_remove(&mut self, pool: &str, key: &str) -> Option<Value> {
        let entries = self.pools.get_mut(pool)?;
        let removed = entries.remove(key);
        if entries.is_empty() {
            self.pools.remove(pool);
        }
        removed
    }

    pub(crate) fn pool_count(&self, pool: &str) -> usize {
        self.pools.get(pool).map_or(0, BTreeMap::len)
    }

    pub(crate) fn pool_clear(&mut self, pool: &str) {
        self.pools.remove(pool);
    }

    pub(crate) fn pool_entries(&self, pool: &str) -> Vec<(String, Value)> {
        self.pools
            .get(pool)
            .map(|entries| entries.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pools_are_independent_and_countable() {
        let mut state = ActorState::default();
        state.pool_upsert("a", "k1", json!(1));
        state.pool_upsert("a", "k2", json!(2));
        state.pool_upsert("b", "k1", json!("x"));
        state.pool_upsert("a", "k1", json!(10));
        assert_eq!(state.pool_count("a"), 2);
        assert_eq!(state.pool_get("a", "k1"), Some(&json!(10)));
        assert_eq!(state.pool_remove("a", "k2"), Some(json!(2)));
        state.pool_clear("b");
        assert_eq!(state.pool_count("b"), 0);
        assert_eq!(state.pool_entries("a"), vec![("k1".to_string(), json!(10))]);
    }
}
