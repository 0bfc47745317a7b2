//! sea-orm models, one per table. Lists (tags, contact points) and maps (attributes) are JSON text columns;
//! times are microseconds since the Unix epoch; enums are their proto numbers. Below the models, the two
//! queries the repositories run on any table: chosen columns of the matching rows, and deleting the matching rows.

use sea_orm::{
    ConnectionTrait, EntityTrait, QueryFilter, QuerySelect, Select, TryGetableMany,
    sea_query::IntoCondition,
};

use crate::error::Result;

/// Declares the module `$module` with the sea-orm entity of the table `$table`, whose `Model` has the given
/// columns; no table has relations sea-orm needs to know of, and each keeps the default active-model behaviour.
macro_rules! table {
    ($(#[$doc:meta])* $module:ident = $table:literal { $($columns:tt)* }) => {
        $(#[$doc])*
        pub mod $module {
            use sea_orm::entity::prelude::*;

            #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
            #[sea_orm(table_name = $table)]
            pub struct Model {
                $($columns)*
            }

            #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
            pub enum Relation {}

            impl ActiveModelBehavior for ActiveModel {}
        }
    };
}

table! {
    customers = "customers" {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub version: i64,
        pub first_name: String,
        pub last_name: String,
        pub company: String,
        pub gender: String,
        pub customer_number: Option<String>,
        pub contact_points: String,
        pub notes: String,
        pub tags: String,
        pub credit_hold: bool,
        pub attributes: String,
        pub search_text: String,
        pub create_time: i64,
        pub update_time: i64,
        pub created_by: String,
        pub updated_by: String,
        pub locked: bool,
        pub anonymize_time: Option<i64>,
    }
}

table! {
    /// The normalized lookup keys of each customer's contact points (phone, email, handle).
    contact_keys = "contact_keys" {
        #[sea_orm(primary_key, auto_increment = false)]
        pub customer_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub position: i32,
        pub kind: String,
        pub match_key: String,
    }
}

table! {
    requests = "requests" {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub version: i64,
        pub customer_id: String,
        pub title: String,
        pub description: String,
        pub status: i32,
        pub tags: String,
        pub close_time: Option<i64>,
        pub create_time: i64,
        pub update_time: i64,
        pub created_by: String,
        pub updated_by: String,
    }
}

table! {
    comments = "comments" {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub request_id: String,
        pub text: String,
        pub author: String,
        pub create_time: i64,
    }
}

table! {
    activities = "activities" {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub version: i64,
        pub customer_id: Option<String>,
        pub request_id: Option<String>,
        pub channel: i32,
        pub direction: i32,
        pub internal: bool,
        pub topic: String,
        pub notes: String,
        pub tags: String,
        pub occur_time: i64,
        pub follow_up_time: Option<i64>,
        pub entered_by: String,
        pub contact_name: String,
        pub contact_phone: String,
        pub contact_email: String,
        pub sales_contact: String,
        pub salesperson: String,
        pub reference: String,
        pub create_time: i64,
        pub update_time: i64,
        pub created_by: String,
        pub updated_by: String,
    }
}

table! {
    /// One row per committed change of a record: the source of live warnings, resumable watches and audit history.
    change_log = "change_log" {
        #[sea_orm(primary_key)]
        pub seq: i64,
        pub resource_type: String,
        pub resource_id: String,
        pub version: i64,
        pub kind: String,
        pub agent: String,
        /// JSON array of field names.
        pub changed_fields: String,
        /// JSON object: field -> [old, new].
        pub changes: String,
        /// The customer a request or activity belongs to.
        pub parent_id: Option<String>,
        /// Set for internal activities (never shown to the customer).
        pub internal: bool,
        pub change_time: i64,
        /// The values were removed by AnonymizeCustomer (`changes` is `{}`).
        pub redacted: bool,
    }
}

table! {
    /// API keys: only the SHA-256 of each secret is stored (see `crate::domain::api_key`).
    api_keys = "api_keys" {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        /// The acting agent of calls made with the key.
        pub name: String,
        pub role: String,
        /// The customer a portal key is bound to.
        pub customer_id: Option<String>,
        /// Lower-case hex SHA-256 of the secret.
        pub secret_hash: String,
        pub create_time: i64,
        pub revoke_time: Option<i64>,
    }
}

table! {
    /// Merged customers: the tombstone of each source, with what the merge moved (for unmerging).
    customer_merges = "customer_merges" {
        #[sea_orm(primary_key, auto_increment = false)]
        pub source_id: String,
        pub target_id: String,
        pub merge_time: i64,
        pub merged_by: String,
        /// JSON: the source customer as it was before the merge.
        pub source: String,
        /// JSON: what the merge moved from the source to the target.
        pub moved: String,
    }
}

table! {
    /// The notification outbox.
    notifications = "notifications" {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub customer_id: String,
        pub activity_id: String,
        pub recipient: String,
        pub subject: String,
        pub body: String,
        /// `pending`, `sent` or `failed`.
        pub status: String,
        pub attempts: i32,
        pub last_error: String,
        pub create_time: i64,
        pub send_time: Option<i64>,
        pub next_attempt_time: i64,
        /// A sender that claimed the row owns it until then (several replicas may send).
        pub lease_until: Option<i64>,
    }
}

/// The `columns` of the rows `query` selects, one tuple `T` per row.
pub(super) async fn tuples<E: EntityTrait, T: TryGetableMany>(
    db: &impl ConnectionTrait,
    query: Select<E>,
    columns: impl IntoIterator<Item = E::Column>,
) -> Result<Vec<T>> {
    Ok(query
        .select_only()
        .columns(columns)
        .into_tuple()
        .all(db)
        .await?)
}

/// Deletes the rows of `E` that match `filter`.
pub(super) async fn delete_where<E: EntityTrait>(
    db: &impl ConnectionTrait,
    filter: impl IntoCondition,
) -> Result<()> {
    E::delete_many().filter(filter).exec(db).await?;
    Ok(())
}
