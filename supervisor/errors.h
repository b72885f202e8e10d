/*
 * errors.h — every JSON-RPC error code mcpvisor itself produces, in one place (DESIGN.md, "typed
 * errors"). Codes -32000..-32019 are the implementation range MCP 2026-07-28 leaves to servers;
 * -32020..-32099 belong to the spec; -32001 keeps the meaning the MCP SDKs give it (timeout).
 */
#ifndef MCPVISOR_ERRORS_H
#define MCPVISOR_ERRORS_H

/* JSON-RPC 2.0 */
#define ERR_PARSE            -32700
#define ERR_INVALID_REQUEST  -32600
#define ERR_METHOD_NOT_FOUND -32601
#define ERR_INVALID_PARAMS   -32602 /* also typed: invalid_params (a call's target too long) */
#define ERR_INTERNAL         -32603
#define ERR_CANCELLED        -32800

/* mcpvisor's typed errors: data.type names them */
#define ERR_INVALID_ARGUMENTS  -32602 /* invalid_arguments */
#define ERR_TIMEOUT            -32001 /* timeout */
#define ERR_FORBIDDEN          -32005 /* forbidden */
#define ERR_UNKNOWN_TOOL       -32006 /* unknown_tool */
#define ERR_SCHEMA_DRIFT       -32010 /* schema_drift */
#define ERR_VERSION_MISMATCH   -32011 /* version_mismatch */
#define ERR_INVALID_RESULT     -32012 /* invalid_result */
#define ERR_QUOTA_EXCEEDED     -32013 /* quota_exceeded */
#define ERR_SERVER_UNAVAILABLE -32015 /* server_unavailable */
#define ERR_AUDIT_UNAVAILABLE  -32016 /* audit_unavailable */

/* MCP 2026-07-28 */
#define ERR_HEADER_MISMATCH              -32020
#define ERR_UNSUPPORTED_PROTOCOL_VERSION -32022

#endif
