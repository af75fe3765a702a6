// libsodium calls behind kring's primitive operations.
#include "crypto/primitives.h"

namespace kring {

Hash HashParts(std::string_view context, std::initializer_list<ByteSpan> parts) {
  crypto_generichash_state st;
  crypto_generichash_init(&st, nullptr, 0, kHashBytes);
  uint8_t ctx_len = static_cast<uint8_t>(context.size());
  crypto_generichash_update(&st, &ctx_len, 1);
  crypto_generichash_update(&st, reinterpret_cast<const uint8_t*>(context.data()), context.size());
  for (ByteSpan p : parts) crypto_generichash_update(&st, p.data(), p.size());
  Hash out;
  crypto_generichash_final(&st, out.data(), out.size());
  return out;
}

namespace {
// Ed25519 signs the context-prefixed message; the prefix is short, so we
// build it in one buffer rather than using the multi-part (ph) variant,
// which would give a different, pre-hashed signature scheme.
Bytes WithContext(std::string_view context, ByteSpan message) {
  Bytes buf;
  buf.reserve(context.size() + 1 + message.size());
  buf.push_back(static_cast<uint8_t>(context.size()));
  buf.insert(buf.end(), context.begin(), context.end());
  buf.insert(buf.end(), message.begin(), message.end());
  return buf;
}
}  // namespace

Signature Sign(std::string_view context, ByteSpan message, const SignSecretKey& sk) {
  Bytes buf = WithContext(context, message);
  Signature sig;
  crypto_sign_detached(sig.data(), nullptr, buf.data(), buf.size(), sk.data());
  return sig;
}

bool Verify(std::string_view context, ByteSpan message, const Signature& sig, const SignPublicKey& pk) {
  Bytes buf = WithContext(context, message);
  return crypto_sign_verify_detached(sig.data(), buf.data(), buf.size(), pk.data()) == 0;
}

Signature SignPure(ByteSpan message, const SignSecretKey& sk) {
  Signature sig;
  crypto_sign_detached(sig.data(), nullptr, message.data(), message.size(), sk.data());
  return sig;
}

bool VerifyPure(ByteSpan message, const Signature& sig, const SignPublicKey& pk) {
  return crypto_sign_verify_detached(sig.data(), message.data(), message.size(), pk.data()) == 0;
}

Bytes AeadEncrypt(const ContentKey& key, const Nonce& nonce, ByteSpan associated, ByteSpan plaintext) {
  Bytes out(plaintext.size() + kAeadTagBytes);
  unsigned long long out_len = 0;
  crypto_aead_xchacha20poly1305_ietf_encrypt(out.data(), &out_len, plaintext.data(), plaintext.size(),
                                             associated.data(), associated.size(), nullptr, nonce.data(),
                                             key.data());
  out.resize(out_len);
  return out;
}

Result<Bytes> AeadDecrypt(const ContentKey& key, const Nonce& nonce, ByteSpan associated, ByteSpan ciphertext) {
  if (ciphertext.size() < kAeadTagBytes) return Status::Corruption("ciphertext shorter than its tag");
  Bytes out(ciphertext.size() - kAeadTagBytes);
  unsigned long long out_len = 0;
  if (crypto_aead_xchacha20poly1305_ietf_decrypt(out.data(), &out_len, nullptr, ciphertext.data(),
                                                 ciphertext.size(), associated.data(), associated.size(),
                                                 nonce.data(), key.data()) != 0) {
    return Status::Corruption("ciphertext does not authenticate");
  }
  out.resize(out_len);
  return out;
}

SealedKey SealKey(const ContentKey& key, const BoxPublicKey& recipient) {
  SealedKey out;
  crypto_box_seal(out.data(), key.data(), key.size(), recipient.data());
  return out;
}

Status OpenSealedKey(const SealedKey& sealed, const BoxPublicKey& pk, const BoxSecretKey& sk, ContentKey* key) {
  if (crypto_box_seal_open(key->data(), sealed.data(), sealed.size(), pk.data(), sk.data()) != 0) {
    key->Wipe();
    return Status::Corruption("sealed key does not open with this node's key");
  }
  return Status::Ok();
}

SignPublicKey SignPublicFromSecret(const SignSecretKey& sk) {
  SignPublicKey pk;
  crypto_sign_ed25519_sk_to_pk(pk.data(), sk.data());
  return pk;
}

BoxPublicKey BoxPublicFromSecret(const BoxSecretKey& sk) {
  BoxPublicKey pk;
  crypto_scalarmult_base(pk.data(), sk.data());
  return pk;
}

}  // namespace kring
