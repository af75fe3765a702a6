// A citizen's device talking to a node's portal over HTTP, signing with libsodium where the browser would use Web Crypto: for the demo and the multi-process tests.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "crypto/sodium.h"
#include "examples/cluster.h"

namespace kring {

class CitizenDevice {
 public:
  // A new device (a fresh Ed25519 key pair) for the portal on 127.0.0.1:`portal_port`.
  explicit CitizenDevice(int portal_port);

  // Enrols this device with a one-time code: /api/code, then /api/koppelen
  // with the device's signature over the enrolment statement. Returns the
  // reply of the step that answered last; on 201 the device holds a session.
  HttpReply Enrol(const std::string& code);
  // Starts a session by signing a fresh challenge (after Enrol on any device
  // run of the same key, or after Forget()).
  HttpReply Login();
  // Talks to another node's portal from now on (the same key, no session there yet).
  void UsePortal(int portal_port) {
    port_ = portal_port;
    cookie_.clear();
  }
  // Drops the session cookie (the key stays).
  void Forget() { cookie_.clear(); }

  HttpReply Get(const std::string& path);
  HttpReply Post(const std::string& path, const nlohmann::json& body);

  // Asks the portal for a draft at `draft_path` (POST `body`), signs its
  // statement with this device's key and sends the signature. Returns the
  // draft's reply when it failed, else the reply of /api/ondertekenen.
  HttpReply SignDraft(const std::string& draft_path, const nlohmann::json& body);
  // The same, but signing with `other`'s key: a foreign signature.
  HttpReply SignDraftWith(const CitizenDevice& other, const std::string& draft_path, const nlohmann::json& body);

  const std::string& case_id() const { return case_id_; }
  // The Set-Cookie header of the last answer that set one.
  const std::string& last_set_cookie() const { return set_cookie_; }
  const std::string& key_id() const { return key_id_; }
  // Adopts another device's enrolment (case and key id) without its secret key: an impostor.
  void PretendToBe(const CitizenDevice& other) { case_id_ = other.case_id_; key_id_ = other.key_id_; }

 private:
  HttpReply Send(const std::string& method, const std::string& path, const std::string& body);
  std::string SignText(const std::string& text) const;

  int port_;
  std::string cookie_;
  std::string set_cookie_;
  std::string case_id_;
  std::string key_id_;
  SignPublicKey pk_{};
  SignSecretKey sk_;
};

}  // namespace kring
