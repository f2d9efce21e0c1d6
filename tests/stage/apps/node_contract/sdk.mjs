// An ES module importing the AWS SDK v3 it does not bring: AWS's runtime ships it.
import { ApiGatewayManagementApiClient } from "@aws-sdk/client-apigatewaymanagementapi";
import { DynamoDBDocumentClient } from "@aws-sdk/lib-dynamodb";

export const handler = async () => ({
  statusCode: 200,
  body: [typeof ApiGatewayManagementApiClient, typeof DynamoDBDocumentClient].join(","),
});
