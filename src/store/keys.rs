//! API keys: create (returns the secret once), list, revoke, and find the active key of a secret.
//!
//! Used by the `customer-context keys` commands and by the server's authentication, which looks keys up per
//! call (behind a short cache), so keys created or revoked by the CLI take effect on a running server.

use sea_orm::{
    ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, sea_query::Expr,
};

use super::{Store, customers, entity::api_keys};
use crate::{
    domain::{
        Violations, api_key,
        ids::{new_id, parse_id},
        principal::{Principal, Role},
        reason,
        time::{Micros, now_micros},
    },
    error::{Error, Result},
};

/// A stored key, without its secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiKey {
    pub id: String,
    pub name: String,
    pub role: Role,
    pub customer_id: Option<String>,
    pub create_time: Micros,
    pub revoke_time: Option<Micros>,
}

impl ApiKey {
    /// The caller a call made with this key acts as.
    pub fn principal(&self) -> Principal {
        Principal {
            agent: self.name.clone(),
            role: self.role,
            customer_id: self.customer_id.clone(),
        }
    }
}

/// A key just created, with the secret that is shown this once and never stored.
#[derive(Clone, Debug)]
pub struct NewKey {
    pub key: ApiKey,
    pub secret: String,
}

fn from_model(m: api_keys::Model) -> Result<ApiKey> {
    let role = Role::parse(&m.role).ok_or_else(|| {
        Error::internal(format!("api key {} has unknown role {:?}", m.id, m.role))
    })?;
    Ok(ApiKey {
        id: m.id,
        name: m.name,
        role,
        customer_id: m.customer_id,
        create_time: m.create_time,
        revoke_time: m.revoke_time,
    })
}

impl Store {
    /// Creates a key named `name` (the acting agent of its calls) with `role`. A portal key needs the customer
    /// it is bound to (which must exist); other roles take none. Several active keys may share a name (to
    /// rotate a key without downtime) only if they also share role and customer.
    pub async fn create_key(
        &self,
        name: &str,
        role: &str,
        customer_id: Option<&str>,
    ) -> Result<NewKey> {
        let mut violations = Violations::new();
        api_key::check_name(&mut violations, "name", name);
        let role = Role::parse(role.trim());
        if role.is_none() {
            violations.push(
                "role",
                reason::INVALID_ROLE,
                "role must be admin, agent, router or portal",
            );
        }
        let customer_id = match (role, customer_id.map(str::trim)) {
            (Some(Role::Portal), None | Some("")) => {
                violations.push(
                    "customer",
                    reason::REQUIRED_FIELD,
                    "a portal key is bound to one customer: give --customer ID",
                );
                None
            }
            (Some(Role::Portal), Some(id)) => {
                crate::domain::ids::check_id(&mut violations, "customer", id)
            }
            (Some(role), Some(id)) if !id.is_empty() => {
                violations.push(
                    "customer",
                    reason::INVALID_ROLE,
                    format!("only portal keys are bound to a customer, not {role} keys"),
                );
                None
            }
            _ => None,
        };
        let role = violations.into_result(role)?.unwrap_or(Role::Agent);
        let secret = api_key::new_secret().map_err(Error::internal)?;
        let key = ApiKey {
            id: new_id(),
            name: name.to_owned(),
            role,
            customer_id,
            create_time: now_micros(),
            revoke_time: None,
        };

        let name = name.to_owned();

        self.write_unlogged("create_key", move |txn| {

            Box::pin(async move {

                let name = name.as_str();
                if let Some(customer_id) = &key.customer_id {
                    customers::find(txn, customer_id).await?;
                }
                let namesakes = api_keys::Entity::find()
                    .filter(api_keys::Column::Name.eq(name))
                    .filter(api_keys::Column::RevokeTime.is_null())
                    .all(txn)
                    .await?;
                for other in namesakes.into_iter().map(from_model) {
                    let other = other?;
                    if other.role != key.role || other.customer_id != key.customer_id {
                        return Err(Error::AlreadyExists {
                            reason: "KEY_NAME_TAKEN",
                            message: format!(
                                "an active key named {name:?} has role {}{}; revoke it or choose another name",
                                other.role,
                                other
                                    .customer_id
                                    .map(|c| format!(" for customer {c}"))
                                    .unwrap_or_default()
                            ),
                        });
                    }
                }
                api_keys::Entity::insert(api_keys::ActiveModel {
                    id: Set(key.id.clone()),
                    name: Set(key.name.clone()),
                    role: Set(key.role.as_str().to_owned()),
                    customer_id: Set(key.customer_id.clone()),
                    secret_hash: Set(api_key::hash_secret(&secret)),
                    create_time: Set(key.create_time),
                    revoke_time: Set(None),
                })
                .exec_without_returning(txn)
                .await?;
                Ok(NewKey { key, secret })

            })

        })

        .await
    }

    /// Every key, revoked ones included, oldest first.
    pub async fn list_keys(&self) -> Result<Vec<ApiKey>> {
        api_keys::Entity::find()
            .order_by_asc(api_keys::Column::Id)
            .all(&self.reader())
            .await?
            .into_iter()
            .map(from_model)
            .collect()
    }

    /// Revokes the active key with id `name_or_id`, or else every active key named `name_or_id`. Returns the
    /// keys revoked; none is `NOT_FOUND`.
    pub async fn revoke_key(&self, name_or_id: &str) -> Result<Vec<ApiKey>> {
        let name_or_id = name_or_id.trim();
        let now = now_micros();
        let name_or_id = name_or_id.to_owned();
        self.write_unlogged("revoke_key", move |txn| {
            Box::pin(async move {
                let name_or_id = name_or_id.as_str();
                let by_id = match parse_id(name_or_id) {
                    Some(id) => {
                        api_keys::Entity::find_by_id(id)
                            .filter(api_keys::Column::RevokeTime.is_null())
                            .all(txn)
                            .await?
                    }
                    None => Vec::new(),
                };
                let doomed = if by_id.is_empty() {
                    api_keys::Entity::find()
                        .filter(api_keys::Column::Name.eq(name_or_id))
                        .filter(api_keys::Column::RevokeTime.is_null())
                        .all(txn)
                        .await?
                } else {
                    by_id
                };
                if doomed.is_empty() {
                    return Err(Error::not_found("active api key", name_or_id));
                }
                let ids: Vec<String> = doomed.iter().map(|m| m.id.clone()).collect();
                api_keys::Entity::update_many()
                    .col_expr(api_keys::Column::RevokeTime, Expr::value(now))
                    .filter(api_keys::Column::Id.is_in(ids))
                    .exec(txn)
                    .await?;
                doomed
                    .into_iter()
                    .map(|m| {
                        from_model(m).map(|key| ApiKey {
                            revoke_time: Some(now),
                            ..key
                        })
                    })
                    .collect()
            })
        })
        .await
    }

    /// The active (not revoked) key whose secret is `secret`, if any.
    pub async fn find_active_key(&self, secret: &str) -> Result<Option<ApiKey>> {
        api_keys::Entity::find()
            .filter(api_keys::Column::SecretHash.eq(api_key::hash_secret(secret)))
            .filter(api_keys::Column::RevokeTime.is_null())
            .one(&self.reader())
            .await?
            .map(from_model)
            .transpose()
    }
}
