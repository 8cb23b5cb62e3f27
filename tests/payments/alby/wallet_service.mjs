// A NIP-47 wallet service built on Alby's NWCWalletService (@getalby/sdk), for interop tests.
//
// Everything that crosses the wire (event kinds and tags, NIP-44 / NIP-04 encryption, request
// and response JSON) is Alby's code; what is ours is only the "backend" the SDK asks each
// service implementer to write: an in-memory ledger with instant settlement between its own
// accounts and real-format BOLT-11 invoices, like dvmkit's dev wallet.
//
//   node wallet_service.mjs --relay ws://127.0.0.1:7000 --account <client pubkey hex>=<msat> ...
//
// Prints one JSON line once every connection is subscribed: {"wallet": <pubkey>, "node": <id>}.
// Client secrets never come here: the test keeps them and builds the connection URIs itself.
import { createHash, randomBytes } from "node:crypto";
import { parseArgs } from "node:util";

import { WebSocket } from "ws";
// Node 20 has no global WebSocket, which nostr-tools (inside the SDK) expects.
globalThis.WebSocket ??= WebSocket;

const { NWCWalletService, NWCWalletServiceKeyPair } = await import("@getalby/sdk/nwc");
const { secp256k1 } = await import("@noble/curves/secp256k1.js");
const { bech32 } = await import("@scure/base");

const METHODS = ["get_info", "get_balance", "make_invoice", "pay_invoice", "lookup_invoice"];

const { values } = parseArgs({
  options: {
    relay: { type: "string", multiple: true },
    account: { type: "string", multiple: true },
  },
});
if (!values.relay?.length || !values.account?.length) {
  console.error("usage: wallet_service.mjs --relay URL --account PUBKEY=MSAT [...]");
  process.exit(2);
}

const sha256 = (data) => createHash("sha256").update(data).digest();
const now = () => Math.floor(Date.now() / 1000);

// -- BOLT-11: just enough to sign an invoice (p, d or h, x fields) -----------------------------
const nodeKey = randomBytes(32);
const nodeId = Buffer.from(secp256k1.getPublicKey(nodeKey, true)).toString("hex");

function intWords(value, count) {
  const words = [];
  for (let i = count - 1; i >= 0; i--) words.push(Math.floor(value / 2 ** (5 * i)) % 32);
  return words;
}

function field(tag, words) {
  return [tag, ...intWords(words.length, 2), ...words];
}

function minimalWords(value) {
  const words = [];
  do {
    words.unshift(value % 32);
    value = Math.floor(value / 32);
  } while (value > 0);
  return words;
}

function bolt11(amountMsat, paymentHash, { description, descriptionHash, expiry }) {
  // Whole nano-bitcoin (100 msat) amounts use "n"; anything finer uses pico ("p", 0.1 msat).
  const amount = amountMsat % 100 === 0 ? `${amountMsat / 100}n` : `${amountMsat * 10}p`;
  const hrp = `lnbcrt${amount}`;
  let words = intWords(now(), 7);
  words = words.concat(field(1, bech32.toWords(paymentHash)));
  if (descriptionHash !== undefined) {
    words = words.concat(field(23, bech32.toWords(Buffer.from(descriptionHash, "hex"))));
  } else {
    words = words.concat(field(13, bech32.toWords(Buffer.from(description ?? "", "utf8"))));
  }
  words = words.concat(field(6, minimalWords(expiry)));
  const message = Buffer.concat([Buffer.from(hrp, "utf8"), Buffer.from(wordsToPaddedBytes(words))]);
  const signature = secp256k1.sign(sha256(message), nodeKey, { prehash: false, format: "recovered" });
  // noble puts the recovery id first; BOLT-11 wants it after r || s.
  const sig = Buffer.concat([Buffer.from(signature.slice(1)), Buffer.from([signature[0]])]);
  return bech32.encode(hrp, words.concat(bech32.toWords(sig)), false);
}

function wordsToPaddedBytes(words) {
  // The signed data is the 5-bit words packed into bytes, zero-padded at the end.
  const bytes = [];
  let acc = 0;
  let bits = 0;
  for (const w of words) {
    acc = (acc << 5) | w;
    bits += 5;
    while (bits >= 8) {
      bits -= 8;
      bytes.push((acc >> bits) & 0xff);
    }
    acc &= (1 << bits) - 1;
  }
  if (bits > 0) bytes.push((acc << (8 - bits)) & 0xff);
  return bytes;
}

// -- the ledger ---------------------------------------------------------------------------------
const balances = new Map(); // client pubkey -> msat
const invoices = new Map(); // payment hash -> invoice record
for (const spec of values.account) {
  const [pubkey, msat] = spec.split("=");
  balances.set(pubkey, Number(msat ?? 0));
}

const ok = (result) => ({ result, error: undefined });
const fail = (code, message) => ({ result: undefined, error: { code, message } });

function transaction(record, type) {
  const expired = record.state === "pending" && now() > record.expires_at;
  return {
    type,
    state: expired ? "expired" : record.state,
    invoice: record.invoice,
    description: record.description,
    description_hash: record.description_hash,
    preimage: record.state === "settled" || type === "incoming" ? record.preimage : undefined,
    payment_hash: record.payment_hash,
    amount: record.amount,
    fees_paid: 0,
    created_at: record.created_at,
    expires_at: record.expires_at,
    settled_at: record.settled_at,
    metadata: undefined,
  };
}

function backend(client) {
  return {
    async getInfo() {
      return ok({
        alias: "alby-sdk interop wallet",
        color: "#000000",
        pubkey: nodeId,
        network: "regtest",
        block_height: 1,
        block_hash: "00".repeat(32),
        methods: METHODS,
        notifications: [],
      });
    },
    async getBalance() {
      return ok({ balance: balances.get(client) });
    },
    async makeInvoice(request) {
      if (!Number.isSafeInteger(request.amount) || request.amount <= 0) {
        return fail("OTHER", "amount must be a positive whole number of msat");
      }
      const preimage = randomBytes(32);
      const paymentHash = sha256(preimage);
      const expiry = request.expiry ?? 3600;
      const record = {
        owner: client,
        payer: undefined,
        invoice: bolt11(request.amount, paymentHash, {
          description: request.description,
          descriptionHash: request.description_hash,
          expiry,
        }),
        description: request.description,
        description_hash: request.description_hash,
        preimage: preimage.toString("hex"),
        payment_hash: paymentHash.toString("hex"),
        amount: request.amount,
        state: "pending",
        created_at: now(),
        expires_at: now() + expiry,
        settled_at: undefined,
      };
      invoices.set(record.payment_hash, record);
      return ok(transaction(record, "incoming"));
    },
    async payInvoice(request) {
      const record = [...invoices.values()].find((r) => r.invoice === request.invoice?.toLowerCase());
      if (!record) return fail("PAYMENT_FAILED", "no route: the invoice is not from this wallet");
      if (record.state !== "pending") return fail("PAYMENT_FAILED", "the invoice is already paid");
      if (now() > record.expires_at) return fail("PAYMENT_FAILED", "the invoice has expired");
      if (balances.get(client) < record.amount) {
        return fail("INSUFFICIENT_BALANCE", `balance is below the invoice's ${record.amount} msat`);
      }
      balances.set(client, balances.get(client) - record.amount);
      balances.set(record.owner, balances.get(record.owner) + record.amount);
      Object.assign(record, { state: "settled", settled_at: now(), payer: client });
      return ok({ preimage: record.preimage, fees_paid: 0 });
    },
    async lookupInvoice(request) {
      const record = request.payment_hash
        ? invoices.get(request.payment_hash)
        : [...invoices.values()].find((r) => r.invoice === request.invoice?.toLowerCase());
      if (record?.owner === client) return ok(transaction(record, "incoming"));
      if (record?.payer === client) return ok(transaction(record, "outgoing"));
      return fail("NOT_FOUND", "no such invoice");
    },
  };
}

// -- serve --------------------------------------------------------------------------------------
const walletSecret = randomBytes(32).toString("hex");
const service = new NWCWalletService({ relayUrls: values.relay });
const stops = [];
for (const client of balances.keys()) {
  const keypair = new NWCWalletServiceKeyPair(walletSecret, client);
  stops.push(await service.subscribe(keypair, backend(client)));
}
// The relay answers this publish after the subscriptions sent before it on the same
// connection, so once it is accepted every connection is listening.
await service.publishWalletServiceInfoEvent(walletSecret, METHODS, []);
const walletPubkey = new NWCWalletServiceKeyPair(walletSecret, [...balances.keys()][0]).walletPubkey;
console.log(JSON.stringify({ wallet: walletPubkey, node: nodeId }));

const stop = () => {
  for (const s of stops) s();
  service.close();
  process.exit(0);
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
