// The `network` and `keys` commands of kring-node: founding, signing, joining and changing a network roster; rotating keys.
#pragma once

#include <memory>
#include <optional>

#include <CLI/CLI.hpp>

namespace kring {

struct NetworkCommands;
// Adds `network ...` and `keys ...` to `app`; the result holds their options.
std::shared_ptr<NetworkCommands> AddNetworkCommands(CLI::App& app);
// The exit code when one of them was chosen; nullopt otherwise.
std::optional<int> RunNetworkCommands(const NetworkCommands& c);

}  // namespace kring
