//! Sorted sets.

use bytes::Bytes;
use rand::Rng;
use resp::Frame;

use super::hashes::{parse_random_count, random_indices};
use super::lists::{deadline, parse_mpop};
use super::{keyed, CommandDef};
use crate::args::{self, is};
use crate::blob::Blob;
use crate::error::{CommandError, CommandResult};
use crate::exec::Exec;
use crate::value::Value;
use crate::zset::{lex_gte_min, lex_lte_max, LexBound, ScoreBound, SortedSet};

pub(crate) static COMMANDS: &[CommandDef] = &[
    keyed("bzmpop", bzmpop),
    keyed("bzpopmax", bzpopmax),
    keyed("bzpopmin", bzpopmin),
    keyed("zadd", zadd),
    keyed("zcard", zcard),
    keyed("zcount", zcount),
    keyed("zdiff", zdiff),
    keyed("zdiffstore", zdiffstore),
    keyed("zincrby", zincrby),
    keyed("zinter", zinter),
    keyed("zintercard", zintercard),
    keyed("zinterstore", zinterstore),
    keyed("zlexcount", zlexcount),
    keyed("zmpop", zmpop),
    keyed("zmscore", zmscore),
    keyed("zpopmax", zpopmax),
    keyed("zpopmin", zpopmin),
    keyed("zrandmember", zrandmember),
    keyed("zrange", zrange),
    keyed("zrangebylex", zrangebylex),
    keyed("zrangebyscore", zrangebyscore),
    keyed("zrangestore", zrangestore),
    keyed("zrank", zrank),
    keyed("zrem", zrem),
    keyed("zremrangebylex", zremrangebylex),
    keyed("zremrangebyrank", zremrangebyrank),
    keyed("zremrangebyscore", zremrangebyscore),
    keyed("zrevrange", zrevrange),
    keyed("zrevrangebylex", zrevrangebylex),
    keyed("zrevrangebyscore", zrevrangebyscore),
    keyed("zrevrank", zrevrank),
    keyed("zscore", zscore),
    keyed("zunion", zunion),
    keyed("zunionstore", zunionstore),
];

fn zset_for_write<'e>(exec: &'e mut Exec, key: &[u8]) -> Result<&'e mut SortedSet, CommandError> {
    if exec.zset_mut(key)?.is_none() {
        exec.keyspace_mut(key)
            .insert(key, Value::ZSet(Box::default()), 0);
    }
    Ok(exec.zset_mut(key)?.expect("sorted set exists now"))
}

/// Parses a score bound as Redis's `zslParseRange`: `(` for exclusive, C `strtod` rules.
fn parse_score_bound(arg: &[u8]) -> Option<ScoreBound> {
    let (exclusive, text) = match arg.first() {
        Some(b'(') => (true, &arg[1..]),
        _ => (false, arg),
    };
    let text = std::str::from_utf8(text).ok()?.trim_start();
    let value = if text.is_empty() {
        0.0
    } else {
        text.to_ascii_lowercase().parse::<f64>().ok()?
    };
    if value.is_nan() {
        return None;
    }
    Some(ScoreBound { value, exclusive })
}

fn parse_score_range(min: &[u8], max: &[u8]) -> Result<(ScoreBound, ScoreBound), CommandError> {
    match (parse_score_bound(min), parse_score_bound(max)) {
        (Some(a), Some(b)) => Ok((a, b)),
        _ => Err(CommandError::other("ERR min or max is not a float")),
    }
}

fn parse_lex_bound(arg: &[u8]) -> Option<LexBound> {
    match arg.first() {
        Some(b'-') if arg.len() == 1 => Some(LexBound::NegInf),
        Some(b'+') if arg.len() == 1 => Some(LexBound::PosInf),
        Some(b'[') => Some(LexBound::Inclusive(arg[1..].to_vec())),
        Some(b'(') => Some(LexBound::Exclusive(arg[1..].to_vec())),
        _ => None,
    }
}

fn parse_lex_range(min: &[u8], max: &[u8]) -> Result<(LexBound, LexBound), CommandError> {
    match (parse_lex_bound(min), parse_lex_bound(max)) {
        (Some(a), Some(b)) => Ok((a, b)),
        _ => Err(CommandError::other(
            "ERR min or max not valid string range item",
        )),
    }
}

/// Returns true if a score range can hold nothing (`zslIsInRange`'s first test).
fn empty_score_range(min: ScoreBound, max: ScoreBound) -> bool {
    min.value > max.value || (min.value == max.value && (min.exclusive || max.exclusive))
}

fn zadd_generic(exec: &mut Exec, args: &[Bytes], force_incr: bool) -> CommandResult {
    let (mut nx, mut xx, mut gt, mut lt, mut ch, mut incr) =
        (false, false, false, false, false, force_incr);
    let mut i = 2;
    while i < args.len() {
        let opt = &args[i];
        if is(opt, "NX") {
            nx = true;
        } else if is(opt, "XX") {
            xx = true;
        } else if is(opt, "CH") {
            ch = true;
        } else if is(opt, "INCR") {
            incr = true;
        } else if is(opt, "GT") {
            gt = true;
        } else if is(opt, "LT") {
            lt = true;
        } else {
            break;
        }
        i += 1;
    }
    let elements = args.len() - i;
    if !elements.is_multiple_of(2) || elements == 0 {
        return Err(CommandError::Syntax);
    }
    if nx && xx {
        return Err(CommandError::other(
            "ERR XX and NX options at the same time are not compatible",
        ));
    }
    if (nx && (gt || lt)) || (gt && lt) {
        return Err(CommandError::other(
            "ERR GT, LT, and/or NX options at the same time are not compatible",
        ));
    }
    if incr && elements > 2 {
        return Err(CommandError::other(
            "ERR INCR option supports a single increment-element pair",
        ));
    }
    let pairs: Vec<(f64, &Bytes)> = args[i..]
        .chunks(2)
        .map(|p| Ok((args::float(&p[0])?, &p[1])))
        .collect::<Result<_, CommandError>>()?;
    let key = &args[1];
    let exists = exec.zset_mut(key)?.is_some();
    let (mut added, mut updated, mut processed) = (0, 0, 0);
    let mut last_score = 0.0;
    if exists || !xx {
        let zset = zset_for_write(exec, key)?;
        for (score, member) in pairs {
            let mut score = score;
            match zset.score(member) {
                Some(current) => {
                    if nx {
                        continue;
                    }
                    if incr {
                        score += current;
                        if score.is_nan() {
                            return Err(CommandError::other(
                                "ERR resulting score is not a number (NaN)",
                            ));
                        }
                    }
                    if (lt && score >= current) || (gt && score <= current) {
                        continue;
                    }
                    if score != current {
                        zset.insert(member, score);
                        updated += 1;
                    }
                }
                None => {
                    if xx {
                        continue;
                    }
                    zset.insert(member, score);
                    added += 1;
                }
            }
            processed += 1;
            last_score = score;
        }
        if added + updated > 0 {
            exec.modified(key);
        }
        exec.remove_if_empty(key);
    }
    Ok(if incr {
        if processed > 0 {
            Frame::Double(last_score)
        } else {
            Frame::Null
        }
    } else {
        Frame::Integer(if ch { added + updated } else { added })
    })
}

fn zadd(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    zadd_generic(exec, args, false)
}

fn zincrby(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    zadd_generic(exec, args, true)
}

fn zcard(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    Ok(Frame::Integer(
        exec.zset(&args[1])?.map_or(0, |z| z.len() as i64),
    ))
}

fn zscore(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    Ok(exec
        .zset(&args[1])?
        .and_then(|z| z.score(&args[2]))
        .map_or(Frame::Null, Frame::Double))
}

fn zmscore(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    let zset = exec.zset(&args[1])?;
    Ok(Frame::Array(
        args[2..]
            .iter()
            .map(|m| {
                zset.and_then(|z| z.score(m))
                    .map_or(Frame::Null, Frame::Double)
            })
            .collect(),
    ))
}

fn zrem(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    let key = &args[1];
    let Some(zset) = exec.zset_mut(key)? else {
        return Ok(Frame::Integer(0));
    };
    let removed = args[2..]
        .iter()
        .filter(|m| zset.remove(m).is_some())
        .count();
    if removed > 0 {
        exec.modified(key);
        exec.remove_if_empty(key);
    }
    Ok(Frame::Integer(removed as i64))
}

fn rank_generic(exec: &mut Exec, args: &[Bytes], reverse: bool) -> CommandResult {
    let Some(zset) = exec.zset(&args[1])? else {
        return Ok(Frame::Null);
    };
    Ok(match zset.rank(&args[2]) {
        Some(r) if reverse => Frame::Integer((zset.len() - 1 - r) as i64),
        Some(r) => Frame::Integer(r as i64),
        None => Frame::Null,
    })
}

fn zrank(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    rank_generic(exec, args, false)
}

fn zrevrank(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    rank_generic(exec, args, true)
}

fn zcount(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    let (min, max) = parse_score_range(&args[2], &args[3])?;
    let Some(zset) = exec.zset(&args[1])? else {
        return Ok(Frame::Integer(0));
    };
    if empty_score_range(min, max) {
        return Ok(Frame::Integer(0));
    }
    Ok(Frame::Integer(zset.range_by_score(min, max).count() as i64))
}

fn zlexcount(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    let (min, max) = parse_lex_range(&args[2], &args[3])?;
    let Some(zset) = exec.zset(&args[1])? else {
        return Ok(Frame::Integer(0));
    };
    Ok(Frame::Integer(zset.range_by_lex(&min, &max).count() as i64))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum RangeKind {
    Auto,
    Rank,
    Score,
    Lex,
}

/// A parsed ZRANGE-family request.
struct RangeRequest {
    kind: RangeKind,
    reverse: bool,
    with_scores: bool,
    offset: i64,
    limit: i64,
    min: Bytes,
    max: Bytes,
}

/// Parses ZRANGE's unified syntax starting at the source key index `src`, as Redis's
/// `zrangeGenericCommand`; `kind` and `reverse` are preset by the older commands.
fn parse_range(
    args: &[Bytes],
    src: usize,
    store: bool,
    kind: RangeKind,
    reverse: Option<bool>,
) -> Result<RangeRequest, CommandError> {
    let (mut kind, mut direction) = (kind, reverse);
    let (mut with_scores, mut offset, mut limit) = (false, 0i64, -1i64);
    let mut j = src + 3;
    while j < args.len() {
        let left = args.len() - j - 1;
        let opt = &args[j];
        if !store && is(opt, "WITHSCORES") {
            with_scores = true;
        } else if is(opt, "LIMIT") && left >= 2 {
            offset = args::int(&args[j + 1])?;
            limit = args::int(&args[j + 2])?;
            j += 2;
        } else if direction.is_none() && is(opt, "REV") {
            direction = Some(true);
        } else if kind == RangeKind::Auto && is(opt, "BYLEX") {
            kind = RangeKind::Lex;
        } else if kind == RangeKind::Auto && is(opt, "BYSCORE") {
            kind = RangeKind::Score;
        } else {
            return Err(CommandError::Syntax);
        }
        j += 1;
    }
    if kind == RangeKind::Auto {
        kind = RangeKind::Rank;
    }
    let reverse = direction.unwrap_or(false);
    if limit != -1 && kind == RangeKind::Rank {
        return Err(CommandError::other(
            "ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX",
        ));
    }
    if with_scores && kind == RangeKind::Lex {
        return Err(CommandError::other(
            "ERR syntax error, WITHSCORES not supported in combination with BYLEX",
        ));
    }
    let (mut min, mut max) = (args[src + 1].clone(), args[src + 2].clone());
    if reverse && kind != RangeKind::Rank {
        std::mem::swap(&mut min, &mut max);
    }
    Ok(RangeRequest {
        kind,
        reverse,
        with_scores,
        offset,
        limit,
        min,
        max,
    })
}

/// Applies LIMIT offset/count to an iterator, as Redis does (a negative offset yields nothing,
/// a negative count means all).
fn limited<'a, T: 'a>(
    iter: impl Iterator<Item = T> + 'a,
    offset: i64,
    limit: i64,
) -> Box<dyn Iterator<Item = T> + 'a> {
    if offset < 0 {
        return Box::new(std::iter::empty());
    }
    let iter = iter.skip(offset as usize);
    if limit < 0 {
        Box::new(iter)
    } else {
        Box::new(iter.take(limit as usize))
    }
}

/// Runs a parsed range against a sorted set: (member, score) pairs in reply order.
fn run_range(zset: &SortedSet, req: &RangeRequest) -> Result<Vec<(Blob, f64)>, CommandError> {
    Ok(match req.kind {
        RangeKind::Rank | RangeKind::Auto => {
            let start = args::int(&req.min)?;
            let end = args::int(&req.max)?;
            let len = zset.len() as i64;
            let start = if start < 0 {
                (len + start).max(0)
            } else {
                start
            };
            let end = if end < 0 { len + end } else { end };
            if start > end || start >= len {
                return Ok(Vec::new());
            }
            let end = end.min(len - 1);
            let count = (end - start + 1) as usize;
            if req.reverse {
                zset.iter()
                    .rev()
                    .skip(start as usize)
                    .take(count)
                    .map(|(m, s)| (m.clone(), s))
                    .collect()
            } else {
                zset.iter()
                    .skip(start as usize)
                    .take(count)
                    .map(|(m, s)| (m.clone(), s))
                    .collect()
            }
        }
        RangeKind::Score => {
            let (min, max) = parse_score_range(&req.min, &req.max)?;
            if req.offset > 0 && req.offset >= zset.len() as i64 {
                return Ok(Vec::new());
            }
            if empty_score_range(min, max) {
                return Ok(Vec::new());
            }
            let range = zset.range_by_score(min, max).map(|(m, s)| (m.clone(), s));
            if req.reverse {
                limited(range.rev(), req.offset, req.limit).collect()
            } else {
                limited(range, req.offset, req.limit).collect()
            }
        }
        RangeKind::Lex => {
            let (min, max) = parse_lex_range(&req.min, &req.max)?;
            if req.offset > 0 && req.offset >= zset.len() as i64 {
                return Ok(Vec::new());
            }
            let range: Vec<(Blob, f64)> = zset
                .iter()
                .filter(|(m, _)| lex_gte_min(m, &min) && lex_lte_max(m, &max))
                .map(|(m, s)| (m.clone(), s))
                .collect();
            if req.reverse {
                limited(range.into_iter().rev(), req.offset, req.limit).collect()
            } else {
                limited(range.into_iter(), req.offset, req.limit).collect()
            }
        }
    })
}

fn members_reply(items: Vec<(Blob, f64)>, with_scores: bool) -> Frame {
    if with_scores {
        Frame::Pairs(
            items
                .into_iter()
                .map(|(m, s)| (Frame::bulk(&m), Frame::Double(s)))
                .collect(),
        )
    } else {
        Frame::Array(items.into_iter().map(|(m, _)| Frame::bulk(&m)).collect())
    }
}

/// Validates a range's bounds before the key is read (Redis reports bad bounds first).
fn validate_bounds(req: &RangeRequest) -> Result<(), CommandError> {
    match req.kind {
        RangeKind::Rank | RangeKind::Auto => {
            args::int(&req.min)?;
            args::int(&req.max)?;
        }
        RangeKind::Score => {
            parse_score_range(&req.min, &req.max)?;
        }
        RangeKind::Lex => {
            parse_lex_range(&req.min, &req.max)?;
        }
    }
    Ok(())
}

fn range_command(
    exec: &mut Exec,
    args: &[Bytes],
    kind: RangeKind,
    reverse: Option<bool>,
) -> CommandResult {
    let req = parse_range(args, 1, false, kind, reverse)?;
    validate_bounds(&req)?;
    let Some(zset) = exec.zset(&args[1])? else {
        return Ok(Frame::Array(Vec::new()));
    };
    Ok(members_reply(run_range(zset, &req)?, req.with_scores))
}

fn zrange(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    range_command(exec, args, RangeKind::Auto, None)
}

fn zrevrange(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    range_command(exec, args, RangeKind::Rank, Some(true))
}

fn zrangebyscore(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    range_command(exec, args, RangeKind::Score, Some(false))
}

fn zrevrangebyscore(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    range_command(exec, args, RangeKind::Score, Some(true))
}

fn zrangebylex(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    range_command(exec, args, RangeKind::Lex, Some(false))
}

fn zrevrangebylex(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    range_command(exec, args, RangeKind::Lex, Some(true))
}

fn store_zset(exec: &mut Exec, dst: &[u8], items: impl IntoIterator<Item = (Blob, f64)>) -> i64 {
    let mut zset = SortedSet::new();
    for (m, s) in items {
        zset.insert(&m, s);
    }
    let len = zset.len();
    exec.remove(dst);
    if len > 0 {
        exec.insert(dst, Value::ZSet(Box::new(zset)), 0);
    }
    len as i64
}

fn zrangestore(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    let req = parse_range(args, 2, true, RangeKind::Auto, None)?;
    validate_bounds(&req)?;
    let items = match exec.zset(&args[2])? {
        Some(zset) => run_range(zset, &req)?,
        None => Vec::new(),
    };
    Ok(Frame::Integer(store_zset(exec, &args[1], items)))
}

fn remove_range(exec: &mut Exec, args: &[Bytes], kind: RangeKind) -> CommandResult {
    let req = RangeRequest {
        kind,
        reverse: false,
        with_scores: false,
        offset: 0,
        limit: -1,
        min: args[2].clone(),
        max: args[3].clone(),
    };
    validate_bounds(&req)?;
    let key = &args[1];
    let Some(zset) = exec.zset_mut(key)? else {
        return Ok(Frame::Integer(0));
    };
    let doomed = run_range(zset, &req)?;
    for (m, _) in &doomed {
        zset.remove(m);
    }
    if !doomed.is_empty() {
        exec.modified(key);
        exec.remove_if_empty(key);
    }
    Ok(Frame::Integer(doomed.len() as i64))
}

fn zremrangebyrank(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    remove_range(exec, args, RangeKind::Rank)
}

fn zremrangebyscore(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    remove_range(exec, args, RangeKind::Score)
}

fn zremrangebylex(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    remove_range(exec, args, RangeKind::Lex)
}

/// Pops up to `count` lowest (or highest) members of `key`.
fn pop_members(
    exec: &mut Exec,
    key: &[u8],
    max: bool,
    count: usize,
) -> Result<Vec<(Blob, f64)>, CommandError> {
    let Some(zset) = exec.zset_mut(key)? else {
        return Ok(Vec::new());
    };
    let picked: Vec<(Blob, f64)> = if max {
        zset.iter()
            .rev()
            .take(count)
            .map(|(m, s)| (m.clone(), s))
            .collect()
    } else {
        zset.iter()
            .take(count)
            .map(|(m, s)| (m.clone(), s))
            .collect()
    };
    for (m, _) in &picked {
        zset.remove(m);
    }
    if !picked.is_empty() {
        exec.modified(key);
        exec.remove_if_empty(key);
    }
    Ok(picked)
}

fn zpop(exec: &mut Exec, args: &[Bytes], max: bool) -> CommandResult {
    if args.len() > 3 {
        return Err(CommandError::Syntax);
    }
    let count =
        match args.get(2) {
            Some(arg) => Some(args::int(arg).ok().filter(|c| *c >= 0).ok_or_else(|| {
                CommandError::other("ERR value is out of range, must be positive")
            })?),
            None => None,
        };
    if count == Some(0) {
        exec.zset(&args[1])?;
        return Ok(Frame::Array(Vec::new()));
    }
    let popped = pop_members(exec, &args[1], max, count.unwrap_or(1) as usize)?;
    Ok(match count {
        Some(_) => Frame::Pairs(
            popped
                .into_iter()
                .map(|(m, s)| (Frame::bulk(&m), Frame::Double(s)))
                .collect(),
        ),
        None => Frame::Array(
            popped
                .into_iter()
                .flat_map(|(m, s)| [Frame::bulk(&m), Frame::Double(s)])
                .collect(),
        ),
    })
}

fn zpopmin(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    zpop(exec, args, false)
}

fn zpopmax(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    zpop(exec, args, true)
}

fn bzpop(exec: &mut Exec, args: &[Bytes], max: bool) -> CommandResult {
    let deadline = deadline(exec, &args[args.len() - 1])?;
    let keys = &args[1..args.len() - 1];
    for key in keys {
        exec.zset_mut(key)?;
    }
    for key in keys {
        if exec.zset_mut(key)?.is_some() {
            let (m, s) = pop_members(exec, key, max, 1)?
                .pop()
                .expect("non-empty sorted set");
            return Ok(Frame::Array(vec![
                Frame::Bulk(key.clone()),
                Frame::bulk(&m),
                Frame::Double(s),
            ]));
        }
    }
    if !exec.in_multi() {
        exec.block_on(keys.iter().map(|k| Blob::new(k)).collect(), deadline);
    }
    Ok(Frame::NullArray)
}

fn bzpopmin(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    bzpop(exec, args, false)
}

fn bzpopmax(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    bzpop(exec, args, true)
}

/// Parses MIN (false) or MAX (true).
fn parse_min_max(arg: &[u8]) -> Result<bool, CommandError> {
    if is(arg, "MIN") {
        Ok(false)
    } else if is(arg, "MAX") {
        Ok(true)
    } else {
        Err(CommandError::Syntax)
    }
}

fn mpop_first(
    exec: &mut Exec,
    keys: &[Bytes],
    max: bool,
    count: usize,
) -> Result<Option<Frame>, CommandError> {
    for key in keys {
        if exec.zset_mut(key)?.is_some() {
            let popped = pop_members(exec, key, max, count)?;
            let items = popped
                .into_iter()
                .map(|(m, s)| Frame::Array(vec![Frame::bulk(&m), Frame::Double(s)]))
                .collect();
            return Ok(Some(Frame::Array(vec![
                Frame::Bulk(key.clone()),
                Frame::Array(items),
            ])));
        }
    }
    Ok(None)
}

fn zmpop(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    let (keys, max, count) = parse_mpop(args, 1, parse_min_max)?;
    Ok(mpop_first(exec, keys, max, count)?.unwrap_or(Frame::NullArray))
}

fn bzmpop(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    let deadline = deadline(exec, &args[1])?;
    let (keys, max, count) = parse_mpop(args, 2, parse_min_max)?;
    if let Some(reply) = mpop_first(exec, keys, max, count)? {
        return Ok(reply);
    }
    if !exec.in_multi() {
        exec.block_on(keys.iter().map(|k| Blob::new(k)).collect(), deadline);
    }
    Ok(Frame::NullArray)
}

fn zrandmember(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    let parsed = parse_random_count(args, "WITHSCORES")?;
    let len = match exec.zset(&args[1])? {
        Some(z) => z.len(),
        None => {
            return Ok(if parsed.is_some() {
                Frame::Array(Vec::new())
            } else {
                Frame::Null
            })
        }
    };
    let Some((count, with_scores)) = parsed else {
        let index = exec.rng().random_range(0..len);
        let zset = exec.zset(&args[1])?.expect("checked above");
        return Ok(Frame::bulk(
            zset.get_index(index).expect("index below len").0,
        ));
    };
    if count == 0 {
        return Ok(Frame::Array(Vec::new()));
    }
    let zset_len = len;
    let indices = random_indices(exec.rng(), zset_len, count);
    let zset = exec.zset(&args[1])?.expect("checked above");
    let picked: Vec<(Blob, f64)> = if count > 0 && count as usize >= zset_len {
        // Redis walks the whole set from its highest member down in this case.
        zset.iter().rev().map(|(m, s)| (m.clone(), s)).collect()
    } else {
        indices
            .into_iter()
            .map(|i| {
                zset.get_index(i)
                    .map(|(m, s)| (m.clone(), s))
                    .expect("index below len")
            })
            .collect()
    };
    Ok(members_reply(picked, with_scores))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Aggregate {
    Sum,
    Min,
    Max,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum ZOp {
    Union,
    Inter,
    Diff,
}

/// One input of ZUNION/ZINTER/ZDIFF: a sorted set, or a set whose members score 1.
struct Source {
    members: Vec<(Blob, f64)>,
    weight: f64,
}

impl Source {
    fn score(&self, member: &[u8]) -> Option<f64> {
        self.members
            .iter()
            .find(|(m, _)| m.as_ref() as &[u8] == member)
            .map(|(_, s)| *s)
    }
}

fn aggregate(into: &mut f64, value: f64, how: Aggregate) {
    match how {
        Aggregate::Sum => {
            *into += value;
            // +inf + -inf is NaN; Redis keeps 0 instead.
            if into.is_nan() {
                *into = 0.0;
            }
        }
        Aggregate::Min => *into = into.min(value),
        Aggregate::Max => *into = into.max(value),
    }
}

struct SetOpRequest {
    sources: Vec<Source>,
    aggregate: Aggregate,
    with_scores: bool,
    limit: usize,
}

/// Parses and loads `numkeys key... [WEIGHTS ...] [AGGREGATE ...] [WITHSCORES] [LIMIT]` as
/// Redis's `zunionInterDiffGenericCommand`.
fn parse_set_op(
    exec: &mut Exec,
    args: &[Bytes],
    at: usize,
    op: ZOp,
    store: bool,
    card: bool,
    name: &str,
) -> Result<SetOpRequest, CommandError> {
    let n = args::int(&args[at])?;
    if n < 1 {
        return Err(CommandError::other(format!(
            "ERR at least 1 input key is needed for '{name}' command"
        )));
    }
    if n as usize > args.len() - at - 1 {
        return Err(CommandError::Syntax);
    }
    let n = n as usize;
    let mut sources = Vec::with_capacity(n);
    for key in &args[at + 1..at + 1 + n] {
        let members = match exec.lookup(key).map(|e| &e.value) {
            None => Vec::new(),
            Some(Value::ZSet(z)) => z.iter().map(|(m, s)| (m.clone(), s)).collect(),
            Some(Value::Set(s)) => s.iter().map(|m| (m.clone(), 1.0)).collect(),
            Some(_) => return Err(CommandError::WrongType),
        };
        sources.push(Source {
            members,
            weight: 1.0,
        });
    }
    let (mut how, mut with_scores, mut limit) = (Aggregate::Sum, false, 0usize);
    let mut j = at + 1 + n;
    while j < args.len() {
        let remaining = args.len() - j;
        if op != ZOp::Diff && !card && remaining > n && is(&args[j], "WEIGHTS") {
            for (i, source) in sources.iter_mut().enumerate() {
                source.weight = args::parse_float(&args[j + 1 + i])
                    .ok_or_else(|| CommandError::other("ERR weight value is not a float"))?;
            }
            j += 1 + n;
        } else if op != ZOp::Diff && !card && remaining >= 2 && is(&args[j], "AGGREGATE") {
            how = if is(&args[j + 1], "SUM") {
                Aggregate::Sum
            } else if is(&args[j + 1], "MIN") {
                Aggregate::Min
            } else if is(&args[j + 1], "MAX") {
                Aggregate::Max
            } else {
                return Err(CommandError::Syntax);
            };
            j += 2;
        } else if !store && !card && is(&args[j], "WITHSCORES") {
            with_scores = true;
            j += 1;
        } else if card && remaining >= 2 && is(&args[j], "LIMIT") {
            limit = args::int(&args[j + 1])
                .ok()
                .filter(|l| *l >= 0)
                .ok_or_else(|| CommandError::other("ERR LIMIT can't be negative"))?
                as usize;
            j += 2;
        } else {
            return Err(CommandError::Syntax);
        }
    }
    Ok(SetOpRequest {
        sources,
        aggregate: how,
        with_scores,
        limit,
    })
}

fn compute_set_op(req: &mut SetOpRequest, op: ZOp) -> Vec<(Blob, f64)> {
    let weighted = |score: f64, weight: f64| {
        let v = score * weight;
        if v.is_nan() {
            0.0
        } else {
            v
        }
    };
    let mut result = SortedSet::new();
    match op {
        ZOp::Union => {
            req.sources.sort_by_key(|s| s.members.len());
            let mut acc: indexmap::IndexMap<Blob, f64, crate::value::Hasher> = Default::default();
            for source in &req.sources {
                for (m, s) in &source.members {
                    let v = weighted(*s, source.weight);
                    match acc.get_mut(m) {
                        Some(current) => aggregate(current, v, req.aggregate),
                        None => {
                            acc.insert(m.clone(), v);
                        }
                    }
                }
            }
            for (m, s) in acc {
                result.insert(&m, s);
            }
        }
        ZOp::Inter => {
            req.sources.sort_by_key(|s| s.members.len());
            if req.sources.iter().any(|s| s.members.is_empty()) {
                return Vec::new();
            }
            let (first, rest) = req.sources.split_first().expect("at least one source");
            let lookups: Vec<std::collections::HashMap<&[u8], f64>> = rest
                .iter()
                .map(|s| {
                    s.members
                        .iter()
                        .map(|(m, v)| (m.as_ref() as &[u8], *v))
                        .collect()
                })
                .collect();
            'members: for (m, s) in &first.members {
                let mut score = weighted(*s, first.weight);
                for (source, lookup) in rest.iter().zip(&lookups) {
                    match lookup.get(m.as_ref() as &[u8]) {
                        Some(v) => {
                            aggregate(&mut score, weighted(*v, source.weight), req.aggregate)
                        }
                        None => continue 'members,
                    }
                }
                result.insert(m, score);
                if req.limit > 0 && result.len() >= req.limit {
                    break;
                }
            }
        }
        ZOp::Diff => {
            let (first, rest) = req.sources.split_first().expect("at least one source");
            for (m, s) in &first.members {
                if rest.iter().all(|source| source.score(m).is_none()) {
                    result.insert(m, *s);
                }
            }
        }
    }
    result.iter().map(|(m, s)| (m.clone(), s)).collect()
}

fn set_op_command(exec: &mut Exec, args: &[Bytes], op: ZOp, name: &str) -> CommandResult {
    let mut req = parse_set_op(exec, args, 1, op, false, false, name)?;
    let items = compute_set_op(&mut req, op);
    Ok(members_reply(items, req.with_scores))
}

fn set_op_store(exec: &mut Exec, args: &[Bytes], op: ZOp, name: &str) -> CommandResult {
    let mut req = parse_set_op(exec, args, 2, op, true, false, name)?;
    let items = compute_set_op(&mut req, op);
    Ok(Frame::Integer(store_zset(exec, &args[1], items)))
}

fn zunion(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    set_op_command(exec, args, ZOp::Union, "zunion")
}

fn zinter(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    set_op_command(exec, args, ZOp::Inter, "zinter")
}

fn zdiff(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    set_op_command(exec, args, ZOp::Diff, "zdiff")
}

fn zunionstore(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    set_op_store(exec, args, ZOp::Union, "zunionstore")
}

fn zinterstore(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    set_op_store(exec, args, ZOp::Inter, "zinterstore")
}

fn zdiffstore(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    set_op_store(exec, args, ZOp::Diff, "zdiffstore")
}

fn zintercard(exec: &mut Exec, args: &[Bytes]) -> CommandResult {
    let mut req = parse_set_op(exec, args, 1, ZOp::Inter, false, true, "zintercard")?;
    Ok(Frame::Integer(
        compute_set_op(&mut req, ZOp::Inter).len() as i64
    ))
}
