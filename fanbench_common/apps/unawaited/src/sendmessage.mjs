// The tutorial's sendmessage with the un-awaited fan-out bug: forEach(async ...) starts
// every post and returns at once, so the handler answers before any post is sent. Lambda
// then freezes the environment; the posts wait for its next invocation, if it comes.
// The fix is the tutorial's own: await Promise.all(connections.Items.map(...)).
import { DynamoDBClient } from "@aws-sdk/client-dynamodb";
import { DynamoDBDocumentClient, ScanCommand } from "@aws-sdk/lib-dynamodb";
import {
  ApiGatewayManagementApiClient,
  PostToConnectionCommand,
} from "@aws-sdk/client-apigatewaymanagementapi";

const ddbDocClient = DynamoDBDocumentClient.from(new DynamoDBClient({}));

export const handler = async (event) => {
  let connections;
  try {
    connections = await ddbDocClient.send(new ScanCommand({ TableName: process.env.TABLE_NAME }));
  } catch (err) {
    console.log(err);
    return { statusCode: 500 };
  }
  const callbackAPI = new ApiGatewayManagementApiClient({
    apiVersion: "2018-11-29",
    endpoint: "https://" + event.requestContext.domainName + "/" + event.requestContext.stage,
  });

  const message = JSON.parse(event.body).message;

  connections.Items.forEach(async ({ connectionId }) => {
    if (connectionId !== event.requestContext.connectionId) {
      try {
        await callbackAPI.send(
          new PostToConnectionCommand({ ConnectionId: connectionId, Data: message }),
        );
      } catch (e) {
        console.log(e);
      }
    }
  });

  return { statusCode: 200 };
};
