#pragma once
/// @file atoll.hpp
/// Umbrella header: the whole public API of the atoll core.

#include "atoll/connection.hpp"
#include "atoll/endpoint.hpp"
#include "atoll/error.hpp"
#include "atoll/handler.hpp"
#include "atoll/listener.hpp"
#include "atoll/log.hpp"
#include "atoll/proxy_protocol.hpp"
#include "atoll/server.hpp"
#include "atoll/socket_activation.hpp"
#include "atoll/stats.hpp"
#include "atoll/tls.hpp"
