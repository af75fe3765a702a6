// The OpenAPI document of the local API (docs/api.yaml), compiled in so the node serves the exact file.
#pragma once

namespace kring {
extern const char* const kOpenApiYaml;
}
