//! One notification as an email, handed to the SMTP server.

use std::time::Duration;

use anyhow::anyhow;
use lettre::{
    Address, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor,
    message::{Mailbox, header::ContentType},
    transport::smtp,
};

use crate::{domain::notification::Notification, store::redact};

/// How long the mail server may take to answer one SMTP command.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(20);
/// How long one whole delivery (connect, TLS, every command) may take.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(30);

/// Reply codes that say the service is misconfigured (authentication), not that the message is undeliverable:
/// retried like transient failures, so a fixed password still delivers what was queued meanwhile.
const CONFIGURATION_CODES: [u16; 4] = [530, 534, 535, 538];

/// Why a delivery failed, and whether trying again can help.
#[derive(Debug)]
pub struct Failure {
    pub permanent: bool,
    pub message: String,
}

/// Sends notifications through one SMTP server.
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    /// The domain of message ids: the sender's.
    domain: String,
    /// The server URL without its password, for logs.
    server: String,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer")
            .field("server", &self.server)
            .field("from", &self.from.to_string())
            .finish()
    }
}

impl Mailer {
    /// A mailer for the server at `url` (`smtp://`, `smtp://...?tls=required`, `smtps://`) sending as `from`.
    /// Connects only when sending.
    pub fn new(url: &str, from: &str) -> anyhow::Result<Mailer> {
        let server = redact(url);
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|e| {
                anyhow!(
                    "--smtp-url {server}: {e} (use smtp://HOST:PORT, smtp://HOST:PORT?tls=required or \
                     smtps://HOST:PORT)"
                )
            })?
            .timeout(Some(COMMAND_TIMEOUT))
            .build();
        let from: Mailbox = from
            .parse()
            .map_err(|e| anyhow!("--smtp-from {from:?} is not an email address: {e}"))?;
        let domain = from.email.domain().to_owned();
        Ok(Mailer {
            transport,
            from,
            domain,
            server,
        })
    }

    /// The server URL without its password.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// Hands `notification` to the server. Ok means the server accepted it. The notification's id is the
    /// Message-ID, so a receiver can drop the copy of a message sent again after a crash between acceptance
    /// and recording it.
    pub async fn send(&self, notification: &Notification) -> Result<(), Failure> {
        let permanent = |message: String| Failure {
            permanent: true,
            message,
        };
        let to: Address = notification.recipient.parse().map_err(|e| {
            permanent(format!(
                "the recipient {:?} is not a deliverable address: {e}",
                notification.recipient
            ))
        })?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(Mailbox::new(None, to))
            .subject(notification.subject.as_str())
            .message_id(Some(format!("<{}@{}>", notification.id, self.domain)))
            .header(ContentType::TEXT_PLAIN)
            .body(notification.body.clone())
            .map_err(|e| permanent(format!("cannot build the message: {e}")))?;
        match tokio::time::timeout(SEND_TIMEOUT, self.transport.send(message)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(error)) => Err(classify(&error)),
            Err(_) => Err(Failure {
                permanent: false,
                message: format!(
                    "the mail server did not finish within {SEND_TIMEOUT:?}; the message may or may not have \
                     been accepted"
                ),
            }),
        }
    }
}

/// A 5xx reply refuses the message for good (except authentication problems, which are ours to fix); anything
/// else (4xx, network, TLS, timeouts) may pass later.
fn classify(error: &smtp::Error) -> Failure {
    let code = error.status().map(u16::from);
    let permanent =
        error.is_permanent() && !code.is_some_and(|code| CONFIGURATION_CODES.contains(&code));
    Failure {
        permanent,
        message: format!("mail server: {error}"),
    }
}
