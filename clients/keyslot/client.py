"""Typed Python client for keyslot's two gRPC services.

    from keyslot.client import LicenseClient, DeviceClient, lpb
    from keyslot.errors import NoFreeSlots

    with LicenseClient("127.0.0.1:50051", token=PROVIDER_TOKEN) as lic:
        lic.create_product(product=lpb.Product(product_id="suite", display_name="Suite"))
        codes = lic.issue_codes(terms={...}, count=3).codes
        for code in lic.iter_codes(product_id="suite"):
            print(code.code, lpb.Phase.Name(code.phase))

Each RPC is a snake_case method taking either a prebuilt request message or
keyword arguments that build one (message fields take messages or dicts,
enum fields take values or names, Timestamp/Duration fields take datetime /
timedelta). Every call carries the bearer token given once and a deadline
(``timeout``, default 10 s; per call ``timeout=``). Failures raise the typed
exceptions of ``keyslot.errors`` (``except NoFreeSlots:``).

Retries: read-only methods (Get*, List*, BatchGet*) and mutating methods
whose request carries a ``request_id`` are retried on UNAVAILABLE only,
through the gRPC service config of the channel (exponential backoff). The
client fills an empty ``request_id`` with a uuid4, so a retried mutation is
idempotent on the server (H1). Mutating calls without a request id go over a
second channel that has retries disabled: they are never replayed.

TLS: the services serve TLS. Build channel credentials once with
``tls_credentials`` from the CA that signed the services' certificates
(``make run`` writes the development CA to ``var/tls/ca.pem``), plus a client
certificate and key for mutual TLS:

    from keyslot.client import LicenseClient, tls_credentials

    creds = tls_credentials("var/tls/ca.pem")
    with LicenseClient("127.0.0.1:50051", token, credentials=creds) as lic:
        ...
    peer = tls_credentials("var/tls/ca.pem", cert="var/tls/peer.pem", key="var/tls/peer.key")

``tls_credentials()`` without a CA trusts gRPC's default root certificates.
``tls_credentials`` reads and checks every file at once and raises
``TlsFileError`` (a ``ValueError``) naming the file that is missing,
unreadable, not PEM, encrypted or not the certificate's key. Without
``credentials`` the channel is plaintext (a service started without TLS on
loopback, tests). A server certificate that does not verify raises
``UntrustedServer``; a TLS client reaching a plaintext server raises
``ServerWithoutTls``; both are ``Unavailable`` (``TlsFailure``) and carry the
address dialled in ``target``.
"""

from __future__ import annotations

import json
import ssl
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message

from keyslot.device.v1 import device_service_pb2 as dpb
from keyslot.device.v1 import device_service_pb2_grpc as dpb_grpc
from keyslot.errors import (
    AlreadyExists,
    CodeBlocked,
    CodeCancelled,
    CodeExpired,
    CodePaused,
    CodeUnusable,
    InvalidArgument,
    KeyslotError,
    NoFreeSlots,
    NotFound,
    PermissionDenied,
    RateLimited,
    Refused,
    ServerWithoutTls,
    SubscriptionActive,
    TlsFailure,
    TlsFileError,
    Unauthenticated,
    Unavailable,
    UntrustedServer,
    from_rpc_error,
)
from keyslot.license.v1 import license_service_pb2 as lpb
from keyslot.license.v1 import license_service_pb2_grpc as lpb_grpc

__all__ = [
    "DEFAULT_TIMEOUT",
    "AlreadyExists",
    "CodeBlocked",
    "CodeCancelled",
    "CodeExpired",
    "CodePaused",
    "CodeUnusable",
    "DeviceClient",
    "InvalidArgument",
    "KeyslotError",
    "LicenseClient",
    "NoFreeSlots",
    "NotFound",
    "PermissionDenied",
    "RateLimited",
    "Refused",
    "ServerWithoutTls",
    "SubscriptionActive",
    "TlsFailure",
    "TlsFileError",
    "Unauthenticated",
    "Unavailable",
    "UntrustedServer",
    "dpb",
    "lpb",
    "retry_service_config",
    "tls_credentials",
]

#: Seconds a call may take unless the client or the call says otherwise.
DEFAULT_TIMEOUT = 10.0
#: Prefixes of read-only methods: always safe to retry.
READ_ONLY_PREFIXES = ("Get", "List", "BatchGet")

Req = TypeVar("Req", bound=Message)
Resp = TypeVar("Resp", bound=Message)
Item = TypeVar("Item", bound=Message)


def tls_credentials(
    ca: str | Path | None = None,
    cert: str | Path | None = None,
    key: str | Path | None = None,
) -> grpc.ChannelCredentials:
    """Channel credentials for TLS, to pass as a client's ``credentials``.

    ``ca``: PEM file of the CA certificate(s) to trust (None: gRPC's default
    roots). ``cert`` and ``key``: PEM client certificate (chain) and its
    unencrypted private key, for mutual TLS; both or neither. Raises
    ``TlsFileError`` (a ``ValueError``) naming the file that is missing,
    unreadable, not PEM, encrypted or not the key of the certificate.
    """
    if (cert is None) != (key is None):
        given, missing = ("cert", "key") if key is None else ("key", "cert")
        path = cert if key is None else key
        raise TlsFileError(
            str(path), f"mutual TLS needs both cert and key: {given} without {missing}"
        )
    root: bytes | None = None
    if ca is not None:
        root = _read_pem(ca, "CA certificate", "CERTIFICATE")
        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(
                cadata=root.decode("latin-1")
            )
        except ssl.SSLError as err:
            raise TlsFileError(
                str(ca), f"CA certificate does not load: {_ssl_reason(err)}"
            ) from None
    chain: bytes | None = None
    private: bytes | None = None
    if cert is not None and key is not None:
        chain = _read_pem(cert, "client certificate", "CERTIFICATE")
        private = _read_pem(key, "private key", "PRIVATE KEY")
        if b"ENCRYPTED PRIVATE KEY" in private or b"Proc-Type: 4,ENCRYPTED" in private:
            raise TlsFileError(str(key), "private key is encrypted; gRPC needs it unencrypted")
        try:
            # Checked here because gRPC only reports a mismatch as a failed handshake.
            ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_cert_chain(cert, key, password=b"")
        except ssl.SSLError as err:
            if err.reason == "KEY_VALUES_MISMATCH":
                raise TlsFileError(str(key), f"not the private key of {cert}") from None
            raise TlsFileError(
                str(key), f"certificate {cert} and this key do not load: {_ssl_reason(err)}"
            ) from None
    return grpc.ssl_channel_credentials(
        root_certificates=root, private_key=private, certificate_chain=chain
    )


def _read_pem(path: str | Path, what: str, label: str) -> bytes:
    """A PEM file's bytes, or TlsFileError saying why not."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise TlsFileError(str(path), f"{what} not found") from None
    except IsADirectoryError:
        raise TlsFileError(str(path), f"{what} is a directory, not a file") from None
    except PermissionError:
        raise TlsFileError(str(path), f"{what} is not readable by this user") from None
    except OSError as err:
        raise TlsFileError(str(path), f"{what} cannot be read: {err.strerror}") from None
    if f"{label}-----".encode() not in data:
        raise TlsFileError(str(path), f"{what} holds no PEM {label} block")
    return data


def _ssl_reason(err: ssl.SSLError) -> str:
    return str(err.reason or err.strerror or err)


def retry_service_config(service: str, attempts: int = 4) -> str:
    """The gRPC service config JSON retrying every method of ``service`` on UNAVAILABLE."""
    return json.dumps(
        {
            "methodConfig": [
                {
                    "name": [{"service": service}],
                    "retryPolicy": {
                        "maxAttempts": attempts,
                        "initialBackoff": "0.1s",
                        "maxBackoff": "2s",
                        "backoffMultiplier": 2,
                        "retryableStatusCodes": ["UNAVAILABLE"],
                    },
                }
            ]
        }
    )


def is_retryable(method: str, request: Message) -> bool:
    """Whether a call may be replayed: read-only, or carrying a request id (H1)."""
    if method.startswith(READ_ONLY_PREFIXES):
        return True
    return bool(getattr(request, "request_id", "")) and _has_field(request, "request_id")


def _has_field(message: Message, name: str) -> bool:
    fields: Mapping[str, object] = getattr(message, "DESCRIPTOR").fields_by_name  # noqa: B009
    return name in fields


class _Client:
    """Channels, token, deadline and error mapping shared by both clients."""

    SERVICE = ""
    _STUB: Callable[[grpc.Channel], Any]

    def __init__(
        self,
        target: str | grpc.Channel,
        token: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        retry_attempts: int = 4,
        fill_request_id: bool = True,
        credentials: grpc.ChannelCredentials | None = None,
        options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        """Connects lazily to ``target`` ("host:port"), or uses a given channel as is.

        ``token`` is sent as ``authorization: Bearer <token>`` on every call;
        ``timeout`` is the default deadline in seconds; ``retry_attempts`` (>= 2
        to retry) bounds the attempts of a retryable call on UNAVAILABLE;
        ``credentials`` switches to a TLS channel; ``options`` are extra channel
        options. A channel passed in is used for every call and not closed here.
        """
        self.token = token
        self.timeout = timeout
        self.fill_request_id = fill_request_id
        self._owns_channels = not isinstance(target, grpc.Channel)
        self._target = target
        self._credentials = credentials
        self._options = list(options)
        self._plain: grpc.Channel | None = None
        if isinstance(target, grpc.Channel):
            self._retrying = target
            self._plain = target
        else:
            retry = retry_attempts >= 2
            config = [("grpc.service_config", retry_service_config(self.SERVICE, retry_attempts))]
            self._retrying = self._open(
                [*config, ("grpc.enable_retries", 1)] if retry else [("grpc.enable_retries", 0)]
            )
        self._stub_retrying = self._STUB(self._retrying)
        self._stub_plain: Any = self._STUB(self._plain) if self._plain is not None else None

    def _open(self, extra: list[tuple[str, Any]]) -> grpc.Channel:
        assert isinstance(self._target, str)
        options = [*self._options, *extra]
        if self._credentials is not None:
            return grpc.secure_channel(self._target, self._credentials, options=options)
        return grpc.insecure_channel(self._target, options=options)

    def _stub_for(self, method: str, request: Message) -> Any:
        if is_retryable(method, request):
            return self._stub_retrying
        if self._stub_plain is None:
            # Created on first use: a mutation without request id is never replayed.
            self._plain = self._open([("grpc.enable_retries", 0)])
            self._stub_plain = self._STUB(self._plain)
        return self._stub_plain

    def with_token(self, token: str | None) -> Any:
        """A client for another caller over the same channels (close the original only)."""
        other = object.__new__(type(self))
        other.__dict__.update(self.__dict__)
        other.token = token
        other._owns_channels = False
        return other

    def close(self) -> None:
        """Closes the channels this client opened."""
        if self._owns_channels:
            for channel in {id(c): c for c in (self._retrying, self._plain) if c}.values():
                channel.close()

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _error(self, err: grpc.RpcError) -> KeyslotError:
        """The typed error of a failed call, naming the address dialled."""
        error = from_rpc_error(err)
        if isinstance(self._target, str):
            error.target = self._target
        return error

    def metadata(self, token: str | None = None) -> tuple[tuple[str, str], ...]:
        """The call metadata: the bearer token, when there is one."""
        token = token if token is not None else self.token
        return (("authorization", f"Bearer {token}"),) if token else ()

    def _call(
        self,
        method: str,
        request_type: type[Req],
        response_type: type[Resp],
        request: Req | None,
        fields: Mapping[str, Any],
        timeout: float | None,
        token: str | None,
    ) -> Resp:
        """Builds the request, fills its request id, calls with deadline and token."""
        if request is None:
            request = request_type(**fields)
        elif fields:
            raise TypeError(f"{method}: pass a request or keyword fields, not both")
        elif not isinstance(request, request_type):
            raise TypeError(f"{method} takes {request_type.__name__}, not {type(request).__name__}")
        has_id = _has_field(request, "request_id")
        if self.fill_request_id and has_id and not getattr(request, "request_id"):  # noqa: B009
            # In place: re-sending the same request object stays idempotent.
            setattr(request, "request_id", uuid.uuid4().hex)  # noqa: B010
        rpc = getattr(self._stub_for(method, request), method)
        try:
            response = rpc(
                request,
                timeout=self.timeout if timeout is None else timeout,
                metadata=self.metadata(token),
            )
        except grpc.RpcError as err:
            raise self._error(err) from err
        assert isinstance(response, response_type)
        return response

    def _pages(
        self,
        method: str,
        request_type: type[Req],
        items: str,
        fields: Mapping[str, Any],
        timeout: float | None,
        token: str | None,
    ) -> Iterator[Any]:
        """Follows next_page_token to the end, yielding the items of each page."""
        page_fields = dict(fields)
        while True:
            request = request_type(**page_fields)
            rpc = getattr(self._stub_retrying, method)
            try:
                page = rpc(
                    request,
                    timeout=self.timeout if timeout is None else timeout,
                    metadata=self.metadata(token),
                )
            except grpc.RpcError as err:
                raise self._error(err) from err
            yield from getattr(page, items)
            if not page.next_page_token:
                return
            page_fields["page_token"] = page.next_page_token


class LicenseClient(_Client):
    """keyslot.license.v1.LicenseService: products, codes, lifecycle, grants."""

    SERVICE = "keyslot.license.v1.LicenseService"
    _STUB = lpb_grpc.LicenseServiceStub

    def __enter__(self) -> LicenseClient:
        return self

    def with_token(self, token: str | None) -> LicenseClient:
        """A client for another caller over the same channels (close the original only)."""
        client: LicenseClient = super().with_token(token)
        return client

    def iter_products(
        self, *, timeout: float | None = None, token: str | None = None, **fields: Any
    ) -> Iterator[lpb.Product]:
        """Every product, page by page (fields: page_size)."""
        return self._pages(
            "ListProducts", lpb.ListProductsRequest, "products", fields, timeout, token
        )

    def iter_codes(
        self, *, timeout: float | None = None, token: str | None = None, **fields: Any
    ) -> Iterator[lpb.Code]:
        """Every code of the caller matching the filters (product_id, status, page_size)."""
        return self._pages("ListCodes", lpb.ListCodesRequest, "codes", fields, timeout, token)

    # --- one method per RPC, in proto order ---

    def create_product(
        self,
        request: lpb.CreateProductRequest | None = None,
        /,
        *,
        timeout: float | None = None,
        token: str | None = None,
        **fields: Any,
    ) -> lpb.CreateProductResponse:
        """Registers a product. Providers only. Refused with ALREADY_EXISTS (PRODUCT_EXISTS) when
        the id is taken.

        Request fields: product.
        """
        return self._call(
            "CreateProduct",
            lpb.CreateProductRequest,
            lpb.CreateProductResponse,
            request,
            fields,
            timeout,
            token,
        )

    def get_product(
        self,
        request: lpb.GetProductRequest | None = None,
        /,
        *,
        timeout: float | None = None,
        token: str | None = None,
        **fields: Any,
    ) -> lpb.GetProductResponse:
        """Returns one product.

        Request fields: product_id.
        """
        return self._call(
            "GetProduct",
            lpb.GetProductRequest,
            lpb.GetProductResponse,
            request,
            fields,
            timeout,
            token,
        )

    def list_products(
        self,
        request: lpb.ListProductsRequest | None = None,
        /,
        *,
        timeout: float | None = None,
        token: str | None = None,
        **fields: Any,
    ) -> lpb.ListProductsResponse:
        """Lists products, ordered by id.

        Request fields: page_size, page_token.
        """
        return self._call(
            "ListProducts",
            lpb.ListProductsRequest,
            lpb.ListProductsResponse,
            request,
            fields,
            timeout,
            token,
        )

    def issue_codes(
        self,
        request: lpb.IssueCodesRequest | None = None,
        /,
        *,
        timeout: float | None = None,
        token: str | None = None,
        **fields: Any,
    ) -> lpb.IssueCodesResponse:
        """Issues 1..1000 codes with one set of terms, atomically. Providers only; the caller
        becomes the codes' provider. A request_id is filled in when empty, so a retry is
        safe (H1).

        Request fields: terms, count, request_id.
        """
        return self._call(
            "IssueCodes",
            lpb.IssueCodesRequest,
            lpb.IssueCodesResponse,
            request,
            fields,
            timeout,
            token,
        )

    def get_code(
        self,
        request: lpb.GetCodeRequest | None = None,
        /,
        *,
        timeout: float | None = None,
        token: str | None = None,
        **fields: Any,
    ) -> lpb.GetCodeResponse:
        """Returns a code with its terms and its state evaluated now (L2).

        Request fields: code.
        """
        return self._call(
            "GetCode", lpb.GetCodeRequest, lpb.GetCodeResponse, request, fields, timeout, token
        )

    def batch_get_codes(
        self,
        request: lpb.BatchGetCodesRequest | None = None,
        /,
        *,
        timeout: float | None = None,
        token: str | None = None,
        **fields: Any,
    ) -> lpb.BatchGetCodesResponse:
        """Returns several codes in one call (the device service's subscription and check-in
        views). Unknown codes are left out of the answer.

        Request fields: codes.
        """
        return self._call(
            "BatchGetCodes",
            lpb.BatchGetCodesRequest,
            lpb.BatchGetCodesResponse,
            request,
            fields,
            timeout,
            token,
        )

    def list_codes(
        self,
        request: lpb.ListCodesRequest | None = None,
        /,
        *,
        timeout: float | None = None,
        token: str | None = None,
        **fields: Any,
    ) -> lpb.ListCodesResponse:
        """Lists the caller's codes, ordered by issue, with optional filters.

        Request fields: page_size, page_token, product_id, status.
        """
        return self._call(
            "ListCodes",
            lpb.ListCodesRequest,
            lpb.ListCodesResponse,
            request,
            fields,
            timeout,
            token,
        )

    def pause_subscription(
        self,
        request: lpb.PauseSubscriptionRequest | None = None,
        /,
        *,
        timeout: float | None = None,
        token: str | None = None,
        **fields: Any,
    ) -> lpb.PauseSubscriptionResponse:
        """Pauses a subscription: the term clock stops (L5).

        Request fields: code.
        """
        return self._call(
            "PauseSubscription",
            lpb.PauseSubscriptionRequest,
            lpb.PauseSubscriptionResponse,
            request,
            fields,
            timeout,
            token,
        )

    def resume_subscription(
        self,
        request: lpb.ResumeSubscriptionRequest | None = None,
        /,
        *,
        timeout: float | None = None,
        token: str | None = None,
        **fields: Any,
    ) -> lpb.ResumeSubscriptionResponse:
        """Resumes a paused subscription: expiry moves by the paused time (L5).

        Request fields: code.
        """
        return self._call(
            "ResumeSubscription",
            lpb.ResumeSubscriptionRequest,
            lpb.ResumeSubscriptionResponse,
            request,
            fields,
            timeout,
            token,
        )

    def renew_subscription(
        self,
        request: lpb.RenewSubscriptionRequest | None = None,
        /,
        *,
        timeout: float | None = None,
        token: str | None = None,
        **fields: Any,
    ) -> lpb.RenewSubscriptionResponse:
        """Renews a subscription by whole periods (L3, L4). A request_id is filled in when empty,
        so a retry is safe (H1).

        Request fields: code, periods, request_id.
        """
        return self._call(
            "RenewSubscription",
            lpb.RenewSubscriptionRequest,
            lpb.RenewSubscriptionResponse,
            request,
            fields,
            timeout,
            token,
        )

    def record_prepayment(
        self,
        request: lpb.RecordPrepaymentRequest | None = None,
        /,
        *,
        timeout: float | None = None,
        token: str | None = None,
        **fields: Any,
    ) -> lpb.RecordPrepaymentResponse:
        """Records that the next period(s) are paid, so an auto-renewing subscription renews itself
        at expiry (L4). A request_id is filled in when empty, so a retry is safe (H1).

        Request fields: code, periods, request_id.
        """
        return self._call(
            "RecordPrepayment",
            lpb.RecordPrepaymentRequest,
            lpb.RecordPrepaymentResponse,
            request,
            fields,
            timeout,
            token,
        )

    def cancel_subscription(
        self,
        request: lpb.CancelSubscriptionRequest | None = None,
        /,
        *,
        timeout: float | None = None,
        token: str | None = None,
        **fields: Any,
    ) -> lpb.CancelSubscriptionResponse:
        """Cancels a subscription at the end of its period or immediately (L5).

        Request fields: code, immediately.
        """
        return self._call(
            "CancelSubscription",
            lpb.CancelSubscriptionRequest,
            lpb.CancelSubscriptionResponse,
            request,
            fields,
            timeout,
            token,
        )

    def block_code(
        self,
        request: lpb.BlockCodeRequest | None = None,
        /,
        *,
        timeout: float | None = None,
        token: str | None = None,
        **fields: Any,
    ) -> lpb.BlockCodeResponse:
        """Blocks a code (abuse, refund, fraud): nothing is entitled (L7).

        Request fields: code, reason.
        """
        return self._call(
            "BlockCode",
            lpb.BlockCodeRequest,
            lpb.BlockCodeResponse,
            request,
            fields,
            timeout,
            token,
        )

    def unblock_code(
        self,
        request: lpb.UnblockCodeRequest | None = None,
        /,
        *,
        timeout: float | None = None,
        token: str | None = None,
        **fields: Any,
    ) -> lpb.UnblockCodeResponse:
        """Lifts a block.

        Request fields: code.
        """
        return self._call(
            "UnblockCode",
            lpb.UnblockCodeRequest,
            lpb.UnblockCodeResponse,
            request,
            fields,
            timeout,
            token,
        )

    def set_auto_renewal(
        self,
        request: lpb.SetAutoRenewalRequest | None = None,
        /,
        *,
        timeout: float | None = None,
        token: str | None = None,
        **fields: Any,
    ) -> lpb.SetAutoRenewalResponse:
        """Turns automatic renewal on or off where keyslot owns the subscription, and answers who
        disables it otherwise (L8).

        Request fields: code, auto_renew.
        """
        return self._call(
            "SetAutoRenewal",
            lpb.SetAutoRenewalRequest,
            lpb.SetAutoRenewalResponse,
            request,
            fields,
            timeout,
            token,
        )

    def get_auto_renewal_route(
        self,
        request: lpb.GetAutoRenewalRouteRequest | None = None,
        /,
        *,
        timeout: float | None = None,
        token: str | None = None,
        **fields: Any,
    ) -> lpb.GetAutoRenewalRouteResponse:
        """Answers who disables automatic renewal for a code or a purchase (L8).

        Request fields: code, purchase_channel, order_number.
        """
        return self._call(
            "GetAutoRenewalRoute",
            lpb.GetAutoRenewalRouteRequest,
            lpb.GetAutoRenewalRouteResponse,
            request,
            fields,
            timeout,
            token,
        )

    def create_support_request(
        self,
        request: lpb.CreateSupportRequestRequest | None = None,
        /,
        *,
        timeout: float | None = None,
        token: str | None = None,
        **fields: Any,
    ) -> lpb.CreateSupportRequestResponse:
        """Stores a request to our own support to disable automatic renewal (L8).

        Request fields: support_request.
        """
        return self._call(
            "CreateSupportRequest",
            lpb.CreateSupportRequestRequest,
            lpb.CreateSupportRequestResponse,
            request,
            fields,
            timeout,
            token,
        )

    def prepare_grant(
        self,
        request: lpb.PrepareGrantRequest | None = None,
        /,
        *,
        timeout: float | None = None,
        token: str | None = None,
        **fields: Any,
    ) -> lpb.PrepareGrantResponse:
        """Step 1 of the handshake: checks the code for a purpose and a device and holds the
        license side until a deadline. Peer only. Idempotent by request_id (H1). A
        request_id is filled in when empty, so a retry is safe (H1).

        Request fields: code, purpose, device, caller, request_id, expire_time.
        """
        return self._call(
            "PrepareGrant",
            lpb.PrepareGrantRequest,
            lpb.PrepareGrantResponse,
            request,
            fields,
            timeout,
            token,
        )

    def commit_grant(
        self,
        request: lpb.CommitGrantRequest | None = None,
        /,
        *,
        timeout: float | None = None,
        token: str | None = None,
        **fields: Any,
    ) -> lpb.CommitGrantResponse:
        """Step 2: re-checks the code (H3) and makes the activation real (L1). Idempotent by
        request_id (H1). GRANT_EXPIRED past the deadline (H2). A request_id is filled in
        when empty, so a retry is safe (H1).

        Request fields: grant_id, request_id, app_version.
        """
        return self._call(
            "CommitGrant",
            lpb.CommitGrantRequest,
            lpb.CommitGrantResponse,
            request,
            fields,
            timeout,
            token,
        )

    def abort_grant(
        self,
        request: lpb.AbortGrantRequest | None = None,
        /,
        *,
        timeout: float | None = None,
        token: str | None = None,
        **fields: Any,
    ) -> lpb.AbortGrantResponse:
        """Abandons a prepared grant. Idempotent by request_id (H1). A request_id is filled in when
        empty, so a retry is safe (H1).

        Request fields: grant_id, request_id, reason.
        """
        return self._call(
            "AbortGrant",
            lpb.AbortGrantRequest,
            lpb.AbortGrantResponse,
            request,
            fields,
            timeout,
            token,
        )

    def get_grant(
        self,
        request: lpb.GetGrantRequest | None = None,
        /,
        *,
        timeout: float | None = None,
        token: str | None = None,
        **fields: Any,
    ) -> lpb.GetGrantResponse:
        """Returns a grant and its state.

        Request fields: grant_id.
        """
        return self._call(
            "GetGrant", lpb.GetGrantRequest, lpb.GetGrantResponse, request, fields, timeout, token
        )

    def watch_code_changes(
        self,
        requests: Iterator[lpb.WatchCodeChangesRequest],
        /,
        *,
        timeout: float | None = None,
        token: str | None = None,
    ) -> Iterator[lpb.WatchCodeChangesResponse]:
        """Streams which codes changed, so the peer may keep codes between changes. Peer only.

        ``requests`` yields the acknowledgements: ack_sequence 0 first, then the
        sequence of each response once applied; a change is answered to its own
        caller only after it was acknowledged. Without ``timeout`` the stream has
        no deadline. Ending ``requests`` or an error ends the stream; drop what
        was kept then.
        """
        call = self._stub_retrying.WatchCodeChanges(
            requests, timeout=timeout, metadata=self.metadata(token)
        )
        try:
            yield from call
        except grpc.RpcError as err:
            raise self._error(err) from err
        finally:
            call.cancel()


class DeviceClient(_Client):
    """keyslot.device.v1.DeviceService: accounts, devices, slots, deliveries, reserves."""

    SERVICE = "keyslot.device.v1.DeviceService"
    _STUB = dpb_grpc.DeviceServiceStub

    def __enter__(self) -> DeviceClient:
        return self

    def with_token(self, token: str | None) -> DeviceClient:
        """A client for another caller (an account, device or member credential)
        over the same channels; close the original only."""
        client: DeviceClient = super().with_token(token)
        return client

    def iter_subscriptions(
        self, *, timeout: float | None = None, token: str | None = None, **fields: Any
    ) -> Iterator[dpb.Subscription]:
        """Every subscription of an account (fields: account_id, page_size)."""
        return self._pages(
            "ListSubscriptions",
            dpb.ListSubscriptionsRequest,
            "subscriptions",
            fields,
            timeout,
            token,
        )

    def iter_devices(
        self, *, timeout: float | None = None, token: str | None = None, **fields: Any
    ) -> Iterator[dpb.Device]:
        """Every connected device of an account (fields: account_id, page_size)."""
        return self._pages("ListDevices", dpb.ListDevicesRequest, "devices", fields, timeout, token)

    def iter_deliveries(
        self, *, timeout: float | None = None, token: str | None = None, **fields: Any
    ) -> Iterator[dpb.Delivery]:
        """Every delivery of an account or a device, newest first
        (fields: account_id or device_id, state, page_size)."""
        return self._pages(
            "ListDeliveries", dpb.ListDeliveriesRequest, "deliveries", fields, timeout, token
        )

    def iter_outbox(
        self, *, timeout: float | None = None, token: str | None = None, **fields: Any
    ) -> Iterator[dpb.OutboxMessage]:
        """Every outgoing message, oldest first (fields: page_size). Portal only."""
        return self._pages("ListOutbox", dpb.ListOutboxRequest, "messages", fields, timeout, token)

    # --- one method per RPC, in proto order ---

    def create_account(
        self,
        request: dpb.CreateAccountRequest | None = None,
        /,
        *,
        timeout: float | None = None,
        token: str | None = None,
        **fields: Any,
    ) -> dpb.CreateAccountResponse:
        """Creates an account. Portal or console service only. Returns the account credential once;
        only its hash is stored.

        Request fields: account.
        """
        return self._call(
            "CreateAccount",
            dpb.CreateAccountRequest,
            dpb.CreateAccountResponse,
            request,
            fields,
            timeout,
            token,
        )

    def get_account(
        self,
        request: dpb.GetAccountRequest | None = None,
        /,
        *,
        timeout: float | None = None,
        token: str | None = None,
        **fields: Any,
    ) -> dpb.GetAccountResponse:
        """Returns an account.

        Request fields: account_id.
        """
        return self._call(
            "GetAccount",
            dpb.GetAccountRequest,
            dpb.GetAccountResponse,
            request,
            fields,
            timeout,
            token,
        )

    def add_console_member(
        self,
        request: dpb.AddConsoleMemberRequest | None = None,
        /,
        *,
        timeout: float | None = None,
        token: str | None = None,
        **fields: Any,
    ) -> dpb.AddConsoleMemberResponse:
        """Adds a member with a role to a management-console account and returns the member's
        credential once.

        Request fields: account_id, display_name, role.
        """
        return self._call(
            "AddConsoleMember",
            dpb.AddConsoleMemberRequest,
            dpb.AddConsoleMemberResponse,
            request,
            fields,
            timeout,
            token,
        )

    def add_subscription(
        self,
        request: dpb.AddSubscriptionRequest | None = None,
        /,
        *,
        timeout: float | None = None,
        token: str | None = None,
        **fields: Any,
    ) -> dpb.AddSubscriptionResponse:
        """Registers a code on the account after checking it with the license service (unknown,
        blocked and cancelled codes are refused). A per-user code (D11) is activated for the
        account and takes one of its slots. A request_id is filled in when empty, so a retry
        is safe (H1).

        Request fields: account_id, code, request_id.
        """
        return self._call(
            "AddSubscription",
            dpb.AddSubscriptionRequest,
            dpb.AddSubscriptionResponse,
            request,
            fields,
            timeout,
            token,
        )

    def remove_subscription(
        self,
        request: dpb.RemoveSubscriptionRequest | None = None,
        /,
        *,
        timeout: float | None = None,
        token: str | None = None,
        **fields: Any,
    ) -> dpb.RemoveSubscriptionResponse:
        """Removes a code from the account; a per-user code frees the account's slot and its
        devices lose it at their next check-in (D11).

        Request fields: account_id, code.
        """
        return self._call(
            "RemoveSubscription",
            dpb.RemoveSubscriptionRequest,
            dpb.RemoveSubscriptionResponse,
            request,
            fields,
            timeout,
            token,
        )

    def list_subscriptions(
        self,
        request: dpb.ListSubscriptionsRequest | None = None,
        /,
        *,
        timeout: float | None = None,
        token: str | None = None,
        **fields: Any,
    ) -> dpb.ListSubscriptionsResponse:
        """Lists the account's subscriptions with each code's terms and phase, fetched from the
        license service in one batch.

        Request fields: account_id, page_size, page_token.
        """
        return self._call(
            "ListSubscriptions",
            dpb.ListSubscriptionsRequest,
            dpb.ListSubscriptionsResponse,
            request,
            fields,
            timeout,
            token,
        )

    def list_subscription_devices(
        self,
        request: dpb.ListSubscriptionDevicesRequest | None = None,
        /,
        *,
        timeout: float | None = None,
        token: str | None = None,
        **fields: Any,
    ) -> dpb.ListSubscriptionDevicesResponse:
        """The "my devices" view of one subscription: each device holding or receiving the code,
        with slot and delivery state.

        Request fields: account_id, code.
        """
        return self._call(
            "ListSubscriptionDevices",
            dpb.ListSubscriptionDevicesRequest,
            dpb.ListSubscriptionDevicesResponse,
            request,
            fields,
            timeout,
            token,
        )

    def create_connection_code(
        self,
        request: dpb.CreateConnectionCodeRequest | None = None,
        /,
        *,
        timeout: float | None = None,
        token: str | None = None,
        **fields: Any,
    ) -> dpb.CreateConnectionCodeResponse:
        """Creates a one-time connection code for the account (D1).

        Request fields: account_id.
        """
        return self._call(
            "CreateConnectionCode",
            dpb.CreateConnectionCodeRequest,
            dpb.CreateConnectionCodeResponse,
            request,
            fields,
            timeout,
            token,
        )

    def connect_device(
        self,
        request: dpb.ConnectDeviceRequest | None = None,
        /,
        *,
        timeout: float | None = None,
        token: str | None = None,
        **fields: Any,
    ) -> dpb.ConnectDeviceResponse:
        """Connects a new device with a connection code (D1). Called by the app without a
        credential of its own yet: it presents the connection code. Returns the device
        credential once.

        The connection code itself is the bearer token of this call unless
        ``token`` is given, so any DeviceClient can connect a device.

        Request fields: connection_code, platform, app_version, region, display_name.
        """
        if token is None:
            token = request.connection_code if request is not None else None
            token = token or fields.get("connection_code")
        return self._call(
            "ConnectDevice",
            dpb.ConnectDeviceRequest,
            dpb.ConnectDeviceResponse,
            request,
            fields,
            timeout,
            token,
        )

    def get_device(
        self,
        request: dpb.GetDeviceRequest | None = None,
        /,
        *,
        timeout: float | None = None,
        token: str | None = None,
        **fields: Any,
    ) -> dpb.GetDeviceResponse:
        """Returns a device.

        Request fields: device_id.
        """
        return self._call(
            "GetDevice",
            dpb.GetDeviceRequest,
            dpb.GetDeviceResponse,
            request,
            fields,
            timeout,
            token,
        )

    def list_devices(
        self,
        request: dpb.ListDevicesRequest | None = None,
        /,
        *,
        timeout: float | None = None,
        token: str | None = None,
        **fields: Any,
    ) -> dpb.ListDevicesResponse:
        """Lists the account's connected devices.

        Request fields: account_id, page_size, page_token.
        """
        return self._call(
            "ListDevices",
            dpb.ListDevicesRequest,
            dpb.ListDevicesResponse,
            request,
            fields,
            timeout,
            token,
        )

    def update_device(
        self,
        request: dpb.UpdateDeviceRequest | None = None,
        /,
        *,
        timeout: float | None = None,
        token: str | None = None,
        **fields: Any,
    ) -> dpb.UpdateDeviceResponse:
        """Updates a device's app version, region or name (after an upgrade).

        Request fields: device, update_mask.
        """
        return self._call(
            "UpdateDevice",
            dpb.UpdateDeviceRequest,
            dpb.UpdateDeviceResponse,
            request,
            fields,
            timeout,
            token,
        )

    def disconnect_device(
        self,
        request: dpb.DisconnectDeviceRequest | None = None,
        /,
        *,
        timeout: float | None = None,
        token: str | None = None,
        **fields: Any,
    ) -> dpb.DisconnectDeviceResponse:
        """Disconnects a device and releases its slots, so a lost device frees its seat.

        Request fields: device_id.
        """
        return self._call(
            "DisconnectDevice",
            dpb.DisconnectDeviceRequest,
            dpb.DisconnectDeviceResponse,
            request,
            fields,
            timeout,
            token,
        )

    def send_download_link(
        self,
        request: dpb.SendDownloadLinkRequest | None = None,
        /,
        *,
        timeout: float | None = None,
        token: str | None = None,
        **fields: Any,
    ) -> dpb.SendDownloadLinkResponse:
        """Records a download link for a subscription, to be mailed (D2).

        Request fields: account_id, code, email.
        """
        return self._call(
            "SendDownloadLink",
            dpb.SendDownloadLinkRequest,
            dpb.SendDownloadLinkResponse,
            request,
            fields,
            timeout,
            token,
        )

    def list_outbox(
        self,
        request: dpb.ListOutboxRequest | None = None,
        /,
        *,
        timeout: float | None = None,
        token: str | None = None,
        **fields: Any,
    ) -> dpb.ListOutboxResponse:
        """Lists outgoing messages, oldest first. Operators (portal) only.

        Request fields: page_size, page_token.
        """
        return self._call(
            "ListOutbox",
            dpb.ListOutboxRequest,
            dpb.ListOutboxResponse,
            request,
            fields,
            timeout,
            token,
        )

    def check_in(
        self,
        request: dpb.CheckInRequest | None = None,
        /,
        *,
        timeout: float | None = None,
        token: str | None = None,
        **fields: Any,
    ) -> dpb.CheckInResponse:
        """The app's periodic call: its current code, phase, expiry, entitlements and anything
        pending for it. Device credential only.

        Request fields: app_version.
        """
        return self._call(
            "CheckIn", dpb.CheckInRequest, dpb.CheckInResponse, request, fields, timeout, token
        )

    def activate_device(
        self,
        request: dpb.ActivateDeviceRequest | None = None,
        /,
        *,
        timeout: float | None = None,
        token: str | None = None,
        **fields: Any,
    ) -> dpb.ActivateDeviceResponse:
        """The app enters a code itself: prepare, claim a slot and commit in one call; replaces the
        device's current code (L6). A request_id is filled in when empty, so a retry is
        safe (H1).

        Request fields: code, request_id.
        """
        return self._call(
            "ActivateDevice",
            dpb.ActivateDeviceRequest,
            dpb.ActivateDeviceResponse,
            request,
            fields,
            timeout,
            token,
        )

    def send_subscription(
        self,
        request: dpb.SendSubscriptionRequest | None = None,
        /,
        *,
        timeout: float | None = None,
        token: str | None = None,
        **fields: Any,
    ) -> dpb.SendSubscriptionResponse:
        """Sends a subscription on the account to 1..N connected devices (D4, D5). One target's
        refusal does not undo the others. A request_id is filled in when empty, so a
        retry is safe (H1).

        Request fields: account_id, code, device_ids, request_id.
        """
        return self._call(
            "SendSubscription",
            dpb.SendSubscriptionRequest,
            dpb.SendSubscriptionResponse,
            request,
            fields,
            timeout,
            token,
        )

    def complete_delivery(
        self,
        request: dpb.CompleteDeliveryRequest | None = None,
        /,
        *,
        timeout: float | None = None,
        token: str | None = None,
        **fields: Any,
    ) -> dpb.CompleteDeliveryResponse:
        """Completes the device's own pending delivery (D7). Device credential. A request_id is
        filled in when empty, so a retry is safe (H1).

        Request fields: delivery_id, request_id.
        """
        return self._call(
            "CompleteDelivery",
            dpb.CompleteDeliveryRequest,
            dpb.CompleteDeliveryResponse,
            request,
            fields,
            timeout,
            token,
        )

    def cancel_delivery(
        self,
        request: dpb.CancelDeliveryRequest | None = None,
        /,
        *,
        timeout: float | None = None,
        token: str | None = None,
        **fields: Any,
    ) -> dpb.CancelDeliveryResponse:
        """Undoes a pending delivery and frees its slot (D6). A request_id is filled in when empty,
        so a retry is safe (H1).

        Request fields: delivery_id, request_id.
        """
        return self._call(
            "CancelDelivery",
            dpb.CancelDeliveryRequest,
            dpb.CancelDeliveryResponse,
            request,
            fields,
            timeout,
            token,
        )

    def get_delivery(
        self,
        request: dpb.GetDeliveryRequest | None = None,
        /,
        *,
        timeout: float | None = None,
        token: str | None = None,
        **fields: Any,
    ) -> dpb.GetDeliveryResponse:
        """Returns a delivery.

        Request fields: delivery_id.
        """
        return self._call(
            "GetDelivery",
            dpb.GetDeliveryRequest,
            dpb.GetDeliveryResponse,
            request,
            fields,
            timeout,
            token,
        )

    def list_deliveries(
        self,
        request: dpb.ListDeliveriesRequest | None = None,
        /,
        *,
        timeout: float | None = None,
        token: str | None = None,
        **fields: Any,
    ) -> dpb.ListDeliveriesResponse:
        """Lists deliveries of an account or of a device, newest first.

        Request fields: account_id, device_id, state, page_size, page_token.
        """
        return self._call(
            "ListDeliveries",
            dpb.ListDeliveriesRequest,
            dpb.ListDeliveriesResponse,
            request,
            fields,
            timeout,
            token,
        )

    def add_reserve_code(
        self,
        request: dpb.AddReserveCodeRequest | None = None,
        /,
        *,
        timeout: float | None = None,
        token: str | None = None,
        **fields: Any,
    ) -> dpb.AddReserveCodeResponse:
        """Stores a reserve code on a device (D8): step 1 of a RESERVE handshake. A request_id is
        filled in when empty, so a retry is safe (H1).

        Request fields: device_id, code, request_id.
        """
        return self._call(
            "AddReserveCode",
            dpb.AddReserveCodeRequest,
            dpb.AddReserveCodeResponse,
            request,
            fields,
            timeout,
            token,
        )

    def remove_reserve_code(
        self,
        request: dpb.RemoveReserveCodeRequest | None = None,
        /,
        *,
        timeout: float | None = None,
        token: str | None = None,
        **fields: Any,
    ) -> dpb.RemoveReserveCodeResponse:
        """Removes the device's waiting or failed reserve and aborts its grant.

        Request fields: device_id.
        """
        return self._call(
            "RemoveReserveCode",
            dpb.RemoveReserveCodeRequest,
            dpb.RemoveReserveCodeResponse,
            request,
            fields,
            timeout,
            token,
        )

    def get_license_details(
        self,
        request: dpb.GetLicenseDetailsRequest | None = None,
        /,
        *,
        timeout: float | None = None,
        token: str | None = None,
        **fields: Any,
    ) -> dpb.GetLicenseDetailsResponse:
        """The device's current code and its reserve, with their states.

        Request fields: device_id.
        """
        return self._call(
            "GetLicenseDetails",
            dpb.GetLicenseDetailsRequest,
            dpb.GetLicenseDetailsResponse,
            request,
            fields,
            timeout,
            token,
        )

    def retry_reserve_activation(
        self,
        request: dpb.RetryReserveActivationRequest | None = None,
        /,
        *,
        timeout: float | None = None,
        token: str | None = None,
        **fields: Any,
    ) -> dpb.RetryReserveActivationResponse:
        """The app's "try again" after a failed take-over (D10).

        Request fields: device_id.
        """
        return self._call(
            "RetryReserveActivation",
            dpb.RetryReserveActivationRequest,
            dpb.RetryReserveActivationResponse,
            request,
            fields,
            timeout,
            token,
        )

    def activate_reserve_now(
        self,
        request: dpb.ActivateReserveNowRequest | None = None,
        /,
        *,
        timeout: float | None = None,
        token: str | None = None,
        **fields: Any,
    ) -> dpb.ActivateReserveNowResponse:
        """Takes over at once when the current license is blocked (D10).

        Request fields: device_id.
        """
        return self._call(
            "ActivateReserveNow",
            dpb.ActivateReserveNowRequest,
            dpb.ActivateReserveNowResponse,
            request,
            fields,
            timeout,
            token,
        )

    def remove_license_key(
        self,
        request: dpb.RemoveLicenseKeyRequest | None = None,
        /,
        *,
        timeout: float | None = None,
        token: str | None = None,
        **fields: Any,
    ) -> dpb.RemoveLicenseKeyResponse:
        """Removes the current code from the device; a reserve takes over (D9).

        Request fields: device_id.
        """
        return self._call(
            "RemoveLicenseKey",
            dpb.RemoveLicenseKeyRequest,
            dpb.RemoveLicenseKeyResponse,
            request,
            fields,
            timeout,
            token,
        )
