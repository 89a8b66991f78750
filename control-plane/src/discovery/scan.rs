//! The one way the control plane lists Redis keys: SCAN by prefix (never KEYS, which
//! blocks Redis for as long as it takes), 1,000 keys a round trip.

/// Every key starting with `prefix`. SCAN may return a key more than once (the keyspace can
/// change under the cursor): callers collect into sets or maps.
pub async fn keys_with_prefix(conn: &mut stagedoor_redis::Connection, prefix: &str) -> redis::RedisResult<Vec<String>> {
    let pattern = format!("{prefix}*");
    let mut keys = Vec::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, batch): (u64, Vec<String>) =
            redis::cmd("SCAN").arg(cursor).arg("MATCH").arg(&pattern).arg("COUNT").arg(1000).query_async(conn).await?;
        keys.extend(batch);
        if next == 0 {
            return Ok(keys);
        }
        cursor = next;
    }
}
