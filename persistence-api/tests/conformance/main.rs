//! The conformance suite: every scenario here runs against each `Store`
//! backend through the real HTTP API, and each backend must pass all of it.
//!
//! - `embedded::…`: the embedded store, always;
//! - `scylla::…`: a ScyllaDB or Cassandra node, when `CHAT_TEST_SCYLLA` names
//!   one (`CHAT_TEST_SCYLLA=127.0.0.1:9042`; `scripts/cassandra.sh start`
//!   runs one); without it these tests pass without running and say so.
//!   Each test gets its own keyspace (`conf_<test>`, dropped first), so the
//!   tests run in parallel as usual.
//!
//! - `embedded_cached::…`, `scylla_cached::…`: the same with the Redis read
//!   cache in front of the store, when `CHAT_TEST_REDIS` names a Redis
//!   (`scripts/redis.sh start` runs one on 127.0.0.1:6390): every answer
//!   must be the same as without it.
//!
//! `ingest::` holds the ingest benchmark, ignored by default (see there).

#[path = "../common/mod.rs"]
mod common;

mod backend;
mod batches;
mod counts;
mod durability;
mod feed;
mod ingest;
mod isolation;
mod judging;
mod numbering;
mod paging;
mod reads;
mod workflow;

pub use backend::Backend;

/// Declares each scenario `module::name(backend)` once per backend.
macro_rules! conformance {
    ($($module:ident: [$($name:ident),* $(,)?]),* $(,)?) => {
        mod embedded {
            $(mod $module {
                $(
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $name() {
                        crate::$module::$name(crate::Backend::embedded()).await;
                    }
                )*
            })*
        }
        mod scylla {
            $(mod $module {
                $(
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $name() {
                        let test = concat!(stringify!($module), "_", stringify!($name));
                        if let Some(backend) = crate::Backend::scylla(test).await {
                            backend.run(crate::$module::$name).await;
                        }
                    }
                )*
            })*
        }
        mod embedded_cached {
            $(mod $module {
                $(
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $name() {
                        let test = concat!(stringify!($module), "_", stringify!($name));
                        let backend = Some(crate::Backend::embedded());
                        if let Some(backend) = crate::Backend::cached(backend, test) {
                            crate::$module::$name(backend).await;
                        }
                    }
                )*
            })*
        }
        mod scylla_cached {
            $(mod $module {
                $(
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $name() {
                        let test = concat!("cached_", stringify!($module), "_", stringify!($name));
                        if std::env::var(crate::backend::REDIS_VARIABLE).is_err() {
                            return eprintln!("{test}: skipped, {} is not set", crate::backend::REDIS_VARIABLE);
                        }
                        let backend = crate::Backend::scylla(test).await;
                        if let Some(backend) = crate::Backend::cached(backend, test) {
                            backend.run(crate::$module::$name).await;
                        }
                    }
                )*
            })*
        }
    };
}

conformance! {
    workflow: [
        provision_rename_chat_subscribe_and_read_history,
        implicit_chats_count_and_their_members_see_the_messages,
        engine_reads_chat_state_and_visible_messages,
    ],
    numbering: [
        concurrent_chat_creations_number_one_to_n,
        created_and_implicit_chats_never_share_a_number,
        concurrent_batches_number_each_chat_gaplessly,
    ],
    batches: [
        replaying_a_batch_changes_nothing_and_answers_the_same,
        concurrent_replays_of_one_batch_all_succeed_alike,
        a_conflicting_chat_is_refused_alone,
        a_streams_batches_apply_in_their_order_whatever_arrives_first,
        a_refused_batch_lets_the_next_go_and_the_gap_refuses_its_chat,
    ],
    judging: [
        a_non_member_cannot_write_even_through_a_stale_engine,
        an_implicit_creation_of_an_existing_chat_stores_nothing,
        a_user_cannot_move_the_numbering_far_ahead,
        numbers_past_the_maximum_are_refused_and_exhaustion_is_an_error,
        memberships_answer_exactly_who_is_in,
    ],
    paging: [
        history_pages_across_partitions_both_ways,
        history_for_a_viewer_skips_what_they_may_not_see,
        chat_listing_pages_over_sparse_numbers,
        subscriber_listing_pages_in_user_order,
    ],
    isolation: [
        a_shared_chat_number_shows_each_app_its_own_chat,
    ],
    counts: [
        counts_and_versions_follow_every_change,
        concurrent_subscriptions_count_exactly,
    ],
    durability: [
        state_survives_a_restart_of_the_api,
    ],
    reads: [
        read_positions_move_forward_and_count_what_is_left,
        an_unread_count_past_the_window_is_capped,
    ],
    feed: [
        a_members_feed_spans_their_chats_newest_first,
        a_feed_refuses_bad_cursors_and_limits,
        a_scan_bound_shortens_pages_and_skips_nothing,
    ],
}
